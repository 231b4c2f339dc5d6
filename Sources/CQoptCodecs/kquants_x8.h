// Included twice by kquants.c: once compiled for AVX2 (QOPT_X8_ATTR = target("avx2")), once
// for the baseline; QOPT_X8(name) gives each copy its own name. See the comment above
// `qopt_v8f` in kquants.c for why every lane's bits equal the scalar function's.

// Lane helpers, one copy per target (a 256-bit vector may not cross between them).
#define qopt_sel QOPT_X8(qopt_sel)
#define qopt_seli QOPT_X8(qopt_seli)
#define qopt_splat QOPT_X8(qopt_splat)
#define qopt_spliti QOPT_X8(qopt_spliti)
#define qopt_fabs QOPT_X8(qopt_fabs)
#define qopt_nearest_int QOPT_X8(qopt_nearest_int)
#define qopt_clampi QOPT_X8(qopt_clampi)
#define qopt_gather QOPT_X8(qopt_gather)

static inline __attribute__((always_inline)) QOPT_X8_ATTR qopt_v8f qopt_sel(qopt_v8i m, qopt_v8f a, qopt_v8f b) {
    return (qopt_v8f)((m & (qopt_v8i)a) | (~m & (qopt_v8i)b));
}
static inline __attribute__((always_inline)) QOPT_X8_ATTR qopt_v8i qopt_seli(qopt_v8i m, qopt_v8i a, qopt_v8i b) { return (m & a) | (~m & b); }
static inline __attribute__((always_inline)) QOPT_X8_ATTR qopt_v8f qopt_splat(float v) { return (qopt_v8f){v, v, v, v, v, v, v, v}; }
static inline __attribute__((always_inline)) QOPT_X8_ATTR qopt_v8i qopt_spliti(int32_t v) { return (qopt_v8i){v, v, v, v, v, v, v, v}; }
static inline __attribute__((always_inline)) QOPT_X8_ATTR qopt_v8f qopt_fabs(qopt_v8f v) { return (qopt_v8f)((qopt_v8i)v & qopt_spliti(0x7fffffff)); }
// nearest_int, lane-wise (the same magic-number rounding).
static inline __attribute__((always_inline)) QOPT_X8_ATTR qopt_v8i qopt_nearest_int(qopt_v8f f) {
    qopt_v8i i = (qopt_v8i)(f + qopt_splat(12582912.f));
    return (i & qopt_spliti(0x007fffff)) - qopt_spliti(0x00400000);
}
static inline __attribute__((always_inline)) QOPT_X8_ATTR qopt_v8i qopt_clampi(qopt_v8i l, int32_t lo, int32_t hi) {
    l = qopt_seli(qopt_spliti(hi) < l, qopt_spliti(hi), l);   // MIN(hi, l)
    return qopt_seli(qopt_spliti(lo) > l, qopt_spliti(lo), l); // MAX(lo, ...)
}
static inline __attribute__((always_inline)) QOPT_X8_ATTR qopt_v8f qopt_gather(const float * p, int stride, int i) {
    return (qopt_v8f){p[i], p[stride + i], p[2*stride + i], p[3*stride + i],
                      p[4*stride + i], p[5*stride + i], p[6*stride + i], p[7*stride + i]};
}

// make_qkx2_quants for sub-blocks j = 0..7 of n values at x + n*j (weights likewise); L gets
// the codes at L + n*j, the_min[j] and the returned scales[j] as the scalar function's.
static QOPT_X8_ATTR void QOPT_X8(make_qkx2_quants_x8)(int n, int nmax, const float * GGML_RESTRICT x, const float * GGML_RESTRICT weights,
        uint8_t * GGML_RESTRICT L, float * GGML_RESTRICT the_min, float * GGML_RESTRICT scales,
        float rmin, float rdelta, int nstep, bool use_mad) {
    enum { NMAX_N = 32 };
    qopt_v8f xv[NMAX_N], wv[NMAX_N], Lv[NMAX_N], Laux[NMAX_N];
    for (int i = 0; i < n; ++i) { xv[i] = qopt_gather(x, n, i); wv[i] = qopt_gather(weights, n, i); }
    qopt_v8f min = xv[0], max = xv[0];
    qopt_v8f sum_w = wv[0];
    qopt_v8f sum_x = sum_w * xv[0];
    for (int i = 1; i < n; ++i) {
        min = qopt_sel(xv[i] < min, xv[i], min);
        max = qopt_sel(xv[i] > max, xv[i], max);
        sum_w += wv[i];
        sum_x += wv[i] * xv[i];
    }
    const qopt_v8f zero = qopt_splat(0.f);
    min = qopt_sel(min > zero, zero, min);
    const qopt_v8i flat = max == min;  // the scalar function returns early there
    const qopt_v8f flat_min = min;
    const qopt_v8f fnmax = qopt_splat((float)nmax);
    qopt_v8f iscale = fnmax / (max - min);
    qopt_v8f scale = qopt_splat(1.f) / iscale;
    qopt_v8f best_error = zero;
    for (int i = 0; i < n; ++i) {
        qopt_v8i l = qopt_clampi(qopt_nearest_int(iscale * (xv[i] - min)), 0, nmax);
        Lv[i] = __builtin_convertvector(l, qopt_v8f);
        qopt_v8f diff = scale * Lv[i] + min - xv[i];
        diff = use_mad ? qopt_fabs(diff) : diff * diff;
        best_error += wv[i] * diff;
    }
    if (nstep >= 1) {
        for (int is = 0; is <= nstep; ++is) {
            iscale = qopt_splat(rmin + rdelta*is + nmax) / (max - min);
            qopt_v8f sum_l = zero, sum_l2 = zero, sum_xl = zero;
            for (int i = 0; i < n; ++i) {
                qopt_v8i l = qopt_clampi(qopt_nearest_int(iscale * (xv[i] - min)), 0, nmax);
                qopt_v8f lf = __builtin_convertvector(l, qopt_v8f);
                Laux[i] = lf;
                qopt_v8f w = wv[i];
                sum_l += w*lf;
                sum_l2 += w*lf*lf;
                sum_xl += w*lf*xv[i];
            }
            qopt_v8f D = sum_w * sum_l2 - sum_l * sum_l;
            qopt_v8i ok = D > zero;
            if (!ok[0] && !ok[1] && !ok[2] && !ok[3] && !ok[4] && !ok[5] && !ok[6] && !ok[7]) continue;
            qopt_v8f this_scale = (sum_w * sum_xl - sum_x * sum_l)/D;
            qopt_v8f this_min   = (sum_l2 * sum_x - sum_l * sum_xl)/D;
            qopt_v8i pos = this_min > zero;
            this_min = qopt_sel(pos, zero, this_min);
            this_scale = qopt_sel(pos, sum_xl / sum_l2, this_scale);
            qopt_v8f cur_error = zero;
            for (int i = 0; i < n; ++i) {
                qopt_v8f diff = this_scale * Laux[i] + this_min - xv[i];
                diff = use_mad ? qopt_fabs(diff) : diff * diff;
                cur_error += wv[i] * diff;
            }
            qopt_v8i better = ok & (cur_error < best_error);
            for (int i = 0; i < n; ++i) Lv[i] = qopt_sel(better, Laux[i], Lv[i]);
            best_error = qopt_sel(better, cur_error, best_error);
            scale = qopt_sel(better, this_scale, scale);
            min = qopt_sel(better, this_min, min);
        }
    }
    for (int j = 0; j < 8; ++j) {
        if (flat[j]) {
            for (int i = 0; i < n; ++i) L[n*j + i] = 0;
            the_min[j] = -flat_min[j];
            scales[j] = 0.f;
        } else {
            for (int i = 0; i < n; ++i) L[n*j + i] = (uint8_t)Lv[i][j];
            the_min[j] = -min[j];
            scales[j] = scale[j];
        }
    }
}

// make_qx_quants(n, nmax, x + n*j, L + n*j, 1, NULL) for j = 0..7; returns the scales.
static QOPT_X8_ATTR void QOPT_X8(make_qx_quants_rmse1_x8)(int n, int nmax, const float * GGML_RESTRICT x, int8_t * GGML_RESTRICT L,
        float * GGML_RESTRICT scales) {
    enum { NMAX_N = 32 };
    qopt_v8f xv[NMAX_N], Lv[NMAX_N];
    for (int i = 0; i < n; ++i) xv[i] = qopt_gather(x, n, i);
    const qopt_v8f zero = qopt_splat(0.f);
    qopt_v8f max = zero, amax = zero;
    for (int i = 0; i < n; ++i) {
        qopt_v8f ax = qopt_fabs(xv[i]);
        qopt_v8i m = ax > amax;
        amax = qopt_sel(m, ax, amax);
        max = qopt_sel(m, xv[i], max);
    }
    const qopt_v8i allzero = amax < qopt_splat(GROUP_MAX_EPS);
    qopt_v8f iscale = qopt_splat((float)(-nmax)) / max;
    qopt_v8f sumlx = zero, suml2 = zero;
    for (int i = 0; i < n; ++i) {
        qopt_v8i l = qopt_clampi(qopt_nearest_int(iscale * xv[i]), -nmax, nmax - 1);
        qopt_v8f lf = __builtin_convertvector(l, qopt_v8f);
        Lv[i] = lf;
        qopt_v8f w = xv[i] * xv[i];
        sumlx += w*xv[i]*lf;
        suml2 += w*lf*lf;
    }
    qopt_v8f scale = qopt_sel(suml2 != zero, sumlx/suml2, zero);
    qopt_v8f best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -qopt_splat(nmax + 0.1f*is) / max;
        sumlx = suml2 = zero;
        qopt_v8f Laux[NMAX_N];
        for (int i = 0; i < n; ++i) {
            qopt_v8i l = qopt_clampi(qopt_nearest_int(iscale * xv[i]), -nmax, nmax - 1);
            qopt_v8f lf = __builtin_convertvector(l, qopt_v8f);
            Laux[i] = lf;
            qopt_v8f w = xv[i] * xv[i];
            sumlx += w*xv[i]*lf;
            suml2 += w*lf*lf;
        }
        qopt_v8i better = (suml2 > zero) & (sumlx*sumlx > best*suml2);
        for (int i = 0; i < n; ++i) Lv[i] = qopt_sel(better, Laux[i], Lv[i]);
        qopt_v8f s = sumlx/suml2;
        scale = qopt_sel(better, s, scale);
        best = qopt_sel(better, s*sumlx, best);
    }
    for (int j = 0; j < 8; ++j) {
        for (int i = 0; i < n; ++i) L[n*j + i] = allzero[j] ? 0 : (int8_t)((int)Lv[i][j] + nmax);
        scales[j] = allzero[j] ? 0.f : scale[j];
    }
}

#undef qopt_sel
#undef qopt_seli
#undef qopt_splat
#undef qopt_spliti
#undef qopt_fabs
#undef qopt_nearest_int
#undef qopt_clampi
#undef qopt_gather
