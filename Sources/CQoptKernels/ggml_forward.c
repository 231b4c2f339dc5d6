/* llama.cpp's CPU forward arithmetic, operation for operation, for `calibrate<numerics=llama.cpp>`
 * (`qopt imatrix`): the matrix product of llamafile's tinyBLAS, ggml's flash attention (the
 * tiled path its CPU backend takes for batches of 64 queries or more), RMS norm and SiLU. Each
 * function gives the bits ggml 0.25 (llama.cpp built with AVX2/FMA, as on x86-64 hosts) gives
 * for the same inputs; the scalar bodies (hosts without AVX2/FMA) follow the same per-lane
 * operations with fmaf, so they give the same bits, slowly.
 *
 * References (llama.cpp, ggml/src/ggml-cpu): llamafile/sgemm.cpp (tinyBLAS::gemm_bloc, hsum),
 * ops.cpp (ggml_compute_forward_flash_attn_ext_tiled, ggml_compute_forward_rms_norm_f32),
 * simd-gemm.h (simd_gemm), vec.cpp (ggml_vec_soft_max_f32, ggml_vec_swiglu_f32), vec.h
 * (ggml_v_expf, ggml_v_silu). */
#pragma STDC FP_CONTRACT OFF

#include "CQoptKernels.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && !defined(QOPT_GGML_SCALAR) /* QOPT_GGML_SCALAR: test the scalar bodies */
#include <immintrin.h>
#define QOPT_GGML_X86 1
#define AVX2FMA __attribute__((target("avx2,fma")))
#endif

/* ---------------------------------------------------------------- scalar lane operations */

static inline float f_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t u_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* One lane of ggml_v_expf (vec.h, AVX2 body). */
static float ggml_expf_lane(float x) {
  const float r = 0x1.8p23f;
  const float z = fmaf(x, 0x1.715476p+0f, r);
  const float n = z - r;
  const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
  const uint32_t e = u_of(z) << 23;
  const float k = f_of(e + u_of(1.0f));
  const int c = fabsf(n) > 126;
  const float u = b * b;
  const float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                       u, 0x1.ffffecp-1f * b);
  if (!c) return fmaf(j, k, k);
  const uint32_t g = (n <= 0) ? 0x82000000u : 0;
  const float s1 = f_of(g + 0x7f000000u);
  const float s2 = f_of(e - g);
  if (fabsf(n) > 192) return s1 * s1;
  return fmaf(s2, j, s2) * s1;
}

/* ---------------------------------------------------------------- tinyBLAS matrix product */

/* hsum of tinyBLAS on AVX: ((v4+v0)+(v6+v2)) + ((v5+v1)+(v7+v3)). */
static inline float hsum8(const float *v) {
  float a0 = v[4] + v[0], a1 = v[5] + v[1], a2 = v[6] + v[2], a3 = v[7] + v[3];
  return (a0 + a2) + (a1 + a3);
}

static void sgemm_scalar(const float *w, const float *x, float *y, long m, long n, long k) {
  for (long j = 0; j < n; j++) {
    for (long i = 0; i < m; i++) {
      float lanes[8] = {0};
      const float *a = w + i * k, *b = x + j * k;
      for (long l = 0; l < k; l += 8)
        for (int q = 0; q < 8; q++) lanes[q] = fmaf(a[l + q], b[l + q], lanes[q]);
      y[j * m + i] = hsum8(lanes);
    }
  }
}

#ifdef QOPT_GGML_X86
AVX2FMA static inline float hsum256(__m256 x) {
  __m128 s = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* Tiles of 4 weight rows × 3 tokens (tinyBLAS's on 16 AVX registers); per element the same
 * lane-wise FMA chain and hsum whatever the tile. */
AVX2FMA static void sgemm_avx2(const float *w, const float *x, float *y, long m, long n, long k) {
  long j = 0;
  for (; j + 3 <= n; j += 3) {
    long i = 0;
    for (; i + 4 <= m; i += 4) {
      __m256 c[3][4];
      for (int r = 0; r < 3; r++)
        for (int s = 0; s < 4; s++) c[r][s] = _mm256_setzero_ps();
      for (long l = 0; l < k; l += 8) {
        __m256 a[4];
        for (int s = 0; s < 4; s++) a[s] = _mm256_loadu_ps(w + (i + s) * k + l);
        for (int r = 0; r < 3; r++) {
          __m256 b = _mm256_loadu_ps(x + (j + r) * k + l);
          for (int s = 0; s < 4; s++) c[r][s] = _mm256_fmadd_ps(a[s], b, c[r][s]);
        }
      }
      for (int r = 0; r < 3; r++)
        for (int s = 0; s < 4; s++) y[(j + r) * m + i + s] = hsum256(c[r][s]);
    }
    for (; i < m; i++)
      for (int r = 0; r < 3; r++) {
        __m256 c = _mm256_setzero_ps();
        for (long l = 0; l < k; l += 8)
          c = _mm256_fmadd_ps(_mm256_loadu_ps(w + i * k + l), _mm256_loadu_ps(x + (j + r) * k + l), c);
        y[(j + r) * m + i] = hsum256(c);
      }
  }
  for (; j < n; j++)
    for (long i = 0; i < m; i++) {
      __m256 c = _mm256_setzero_ps();
      for (long l = 0; l < k; l += 8)
        c = _mm256_fmadd_ps(_mm256_loadu_ps(w + i * k + l), _mm256_loadu_ps(x + j * k + l), c);
      y[j * m + i] = hsum256(c);
    }
}
#endif

int qopt_ggml_sgemm(const float *w, const float *x, float *y, long m, long n, long k) {
  if (k % 8 != 0 || m % 4 != 0) return 0;
#ifdef QOPT_GGML_X86
  if (qopt_kernels_avx2()) { sgemm_avx2(w, x, y, m, n, k); return 1; }
#endif
  sgemm_scalar(w, x, y, m, n, k);
  return 1;
}

/* ---------------------------------------------------------------- RMS norm, SiLU */

void qopt_ggml_rms_norm(const float *x, long rows, long d, const float *w, float eps, float *y) {
  for (long r = 0; r < rows; r++) {
    const float *xr = x + r * d;
    float *yr = y + r * d;
    double sum = 0;
    for (long i = 0; i < d; i++) sum += (double)(xr[i] * xr[i]);
    const float mean = (float)(sum / d);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (long i = 0; i < d; i++) yr[i] = (xr[i] * scale) * w[i];
  }
}

static void silu_scalar(const float *x, long n, float *y) {
  long i = 0;
  /* groups of 8 take ggml_v_silu; the tail ggml_silu_f32 (libm expf) */
  for (; i + 8 <= n; i += 8)
    for (int q = 0; q < 8; q++) y[i + q] = x[i + q] / (1.0f + ggml_expf_lane(0.0f - x[i + q]));
  for (; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

/* ---------------------------------------------------------------- flash attention */

enum { FA_TILE_KV = 64 };

/* ggml_vec_soft_max_f32 over one tile of 64 scores: p = exp(s - max) in place, the sum of
 * each group of 8 (hsum order) added in double. */
static double softmax_tile(float *p, float max) {
  double sum = 0;
  for (int g = 0; g < FA_TILE_KV; g += 8) {
    for (int q = 0; q < 8; q++) p[g + q] = ggml_expf_lane(p[g + q] - max);
    sum += (double)hsum8(p + g);
  }
  return sum;
}

/* Keys of one KV head in ggml's dimension order, transposed (d × padded tokens, zero
 * padding): 8 consecutive keys of a dimension are one vector load. */
static void pack_keys(const float *k, long tokens, long wk, long kh, long d, int halfSplit, float *kt, long padded) {
  for (long i = 0; i < d; i++) {
    const long src = halfSplit ? (i & 1) * (d / 2) + i / 2 : i;
    for (long t = 0; t < padded; t++) kt[i * padded + t] = t < tokens ? k[t * wk + kh * d + src] : 0;
  }
}

#ifdef QOPT_GGML_X86
/* ggml_v_expf (vec.h), AVX2 body, verbatim. */
AVX2FMA static inline __m256 v_expf(__m256 x) {
  const __m256 r = _mm256_set1_ps(0x1.8p23f);
  const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
  const __m256 n = _mm256_sub_ps(z, r);
  const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                    _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
  const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
  const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1))));
  const __m256i c = _mm256_castps_si256(
      _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), n), _mm256_set1_ps(126), _CMP_GT_OQ));
  const __m256 u = _mm256_mul_ps(b, b);
  const __m256 j = _mm256_fmadd_ps(
      _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                      _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
      u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
  if (!_mm256_movemask_ps(_mm256_castsi256_ps(c))) return _mm256_fmadd_ps(j, k, k);
  const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                     _mm256_set1_epi32(0x82000000u));
  const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000u)));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
  const __m256i d = _mm256_castps_si256(
      _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), n), _mm256_set1_ps(192), _CMP_GT_OQ));
  return _mm256_or_ps(
      _mm256_and_ps(_mm256_castsi256_ps(d), _mm256_mul_ps(s1, s1)),
      _mm256_andnot_ps(_mm256_castsi256_ps(d),
                       _mm256_or_ps(_mm256_and_ps(_mm256_castsi256_ps(c), _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1)),
                                    _mm256_andnot_ps(_mm256_castsi256_ps(c), _mm256_fmadd_ps(k, j, k)))));
}

AVX2FMA static void silu_avx2(const float *x, long n, float *y) {
  long i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 e = v_expf(_mm256_sub_ps(_mm256_setzero_ps(), v));
    _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1), e)));
  }
  for (; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

AVX2FMA static double softmax_tile_avx2(float *p, float max) {
  double sum = 0;
  for (int g = 0; g < FA_TILE_KV; g += 8) {
    const __m256 val = v_expf(_mm256_sub_ps(_mm256_loadu_ps(p + g), _mm256_set1_ps(max)));
    _mm256_storeu_ps(p + g, val);
    sum += (double)hsum256(val);
  }
  return sum;
}

/* One query row against keys 0...t (d % 8 == 0). */
AVX2FMA static void fa_row_avx2(const float *qp, const float *kt, long padded, const float *v, long wk, long kh,
                                long d, long t, float scale, float *o) {
  __m256 acc[32];
  float kq[FA_TILE_KV];
  const long nv = d / 8;
  for (long i = 0; i < nv; i++) acc[i] = _mm256_setzero_ps();
  float M = -INFINITY, S = 0;
  for (long ic = 0; ic <= t; ic += FA_TILE_KV) {
    for (int tk = 0; tk < FA_TILE_KV; tk += 8) {
      __m256 dot = _mm256_setzero_ps();
      for (long i = 0; i < d; i++)
        dot = _mm256_fmadd_ps(_mm256_set1_ps(qp[i]), _mm256_loadu_ps(kt + i * padded + ic + tk), dot);
      _mm256_storeu_ps(kq + tk, _mm256_mul_ps(dot, _mm256_set1_ps(scale)));
    }
    float tileMax = -INFINITY;
    for (int tk = 0; tk < FA_TILE_KV; tk++) {
      if (ic + tk > t) kq[tk] = -INFINITY;
      else if (kq[tk] > tileMax) tileMax = kq[tk];
    }
    const float Mnew = fmaxf(M, tileMax);
    if (Mnew > M) {
      const float ms = expf(M - Mnew);
      for (long i = 0; i < nv; i++) acc[i] = _mm256_mul_ps(acc[i], _mm256_set1_ps(ms));
      S *= ms;
    }
    M = Mnew;
    S = (float)((double)S + softmax_tile_avx2(kq, Mnew));
    for (int tk = 0; tk < FA_TILE_KV && ic + tk <= t; tk++) {
      const float *vr = v + (ic + tk) * wk + kh * d;
      const __m256 p = _mm256_set1_ps(kq[tk]);
      for (long i = 0; i < nv; i++) acc[i] = _mm256_fmadd_ps(p, _mm256_loadu_ps(vr + 8 * i), acc[i]);
    }
  }
  const float sInv = S == 0.0f ? 0.0f : 1.0f / S;
  for (long i = 0; i < nv; i++) _mm256_storeu_ps(o + 8 * i, _mm256_mul_ps(acc[i], _mm256_set1_ps(sInv)));
}
#endif

/* One query row, scalar: the same operations lane by lane. */
static void fa_row_scalar(const float *qp, const float *kt, long padded, const float *v, long wk, long kh, long d,
                          long t, float scale, float *o) {
  float acc[256], kq[FA_TILE_KV];
  for (long i = 0; i < d; i++) acc[i] = 0;
  float M = -INFINITY, S = 0;
  for (long ic = 0; ic <= t; ic += FA_TILE_KV) {
    float tileMax = -INFINITY;
    for (int tk = 0; tk < FA_TILE_KV; tk++) {
      if (ic + tk > t) { kq[tk] = -INFINITY; continue; }
      float dot = 0;
      for (long i = 0; i < d; i++) dot = fmaf(qp[i], kt[i * padded + ic + tk], dot);
      kq[tk] = dot * scale;
      if (kq[tk] > tileMax) tileMax = kq[tk];
    }
    const float Mnew = fmaxf(M, tileMax);
    if (Mnew > M) {
      const float ms = expf(M - Mnew);
      for (long i = 0; i < d; i++) acc[i] *= ms;
      S *= ms;
    }
    M = Mnew;
    S = (float)((double)S + softmax_tile(kq, Mnew));
    for (int tk = 0; tk < FA_TILE_KV && ic + tk <= t; tk++) {
      const float *vr = v + (ic + tk) * wk + kh * d;
      for (long i = 0; i < d; i++) acc[i] = fmaf(kq[tk], vr[i], acc[i]);
    }
  }
  const float sInv = S == 0.0f ? 0.0f : 1.0f / S;
  for (long i = 0; i < d; i++) o[i] = acc[i] * sInv;
}

void qopt_ggml_flash_attn(
  const float *q, const float *k, const float *v, long tokens, long heads, long kvHeads, long d,
  int halfSplit, float scale, float *out)
{
  if (d > 256 || tokens <= 0) return;
  const long group = heads / kvHeads, wq = heads * d, wk = kvHeads * d;
  const long padded = (tokens + FA_TILE_KV - 1) / FA_TILE_KV * FA_TILE_KV;
  float *kt = malloc(sizeof(float) * d * padded);
  float qp[256];
  if (!kt) return;
#ifdef QOPT_GGML_X86
  const int avx2 = qopt_kernels_avx2() && d % 8 == 0;
#endif
  for (long kh = 0; kh < kvHeads; kh++) {
    pack_keys(k, tokens, wk, kh, d, halfSplit, kt, padded);
    for (long h = kh * group; h < (kh + 1) * group; h++) {
      for (long t = 0; t < tokens; t++) {
        const float *qr = q + t * wq + h * d;
        for (long i = 0; i < d; i++) qp[i] = halfSplit ? qr[(i & 1) * (d / 2) + i / 2] : qr[i];
        float *o = out + t * wq + h * d;
#ifdef QOPT_GGML_X86
        if (avx2) { fa_row_avx2(qp, kt, padded, v, wk, kh, d, t, scale, o); continue; }
#endif
        fa_row_scalar(qp, kt, padded, v, wk, kh, d, t, scale, o);
      }
    }
  }
  free(kt);
}

void qopt_ggml_silu(const float *x, long n, float *y) {
#ifdef QOPT_GGML_X86
  if (qopt_kernels_avx2()) { silu_avx2(x, n, y); return; }
#endif
  silu_scalar(x, n, y);
}
