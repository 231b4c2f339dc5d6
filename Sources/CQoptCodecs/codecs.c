// Block encoders for GGUF Q8_0 / Q4_0 / Q4_1. Every vector operation is the scalar one it
// replaces (compare-and-select, separate multiply and add — never fused), so both bodies give
// the bits of the scalar definitions in Tests/QoptBackendsTests/BlockQuantizerOracleTests.swift.
#pragma clang fp contract(off)

#include "CQoptCodecs.h"
#include "cpu.h"
#include "halffloat.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif


static inline void store_half(uint8_t *p, float v) {
  uint16_t h = half_bits(v);
  p[0] = (uint8_t)h;
  p[1] = (uint8_t)(h >> 8);
}

/// floor(t) for 0 <= t < 2^22.
static inline int32_t floor_small(float t) {
  const float magic = 8388608.0f;
  float m = t + magic;
  float rf = m - magic;
  int32_t r = (int32_t)rf;
  return rf > t ? r - 1 : r;
}

static inline int32_t round_half_away(float v) {
  float a0 = fabsf(v);
  float a = a0 < 1024 ? a0 : 0;
  int32_t fl = floor_small(a);
  int32_t b = fl + (a - (float)fl >= 0.5f ? 1 : 0);
  return v < 0 ? -b : b;
}

static inline uint8_t nibble(float t) { return (uint8_t)floor_small(t > 0 ? (t < 15.5f ? t : 15.5f) : 0); }

// MARK: portable bodies

static void q8_0_portable(const float *x, uint8_t *out) {
  float amax = 0;
  for (int i = 0; i < 32; i++) {
    float a = fabsf(x[i]);
    amax = a > amax ? a : amax;
  }
  float d = amax / 127;
  float id = d == 0 ? 0 : 1 / d;
  store_half(out, d);
  for (int i = 0; i < 32; i++) out[2 + i] = (uint8_t)(int8_t)round_half_away(x[i] * id);
}

static void q4_0_portable(const float *x, uint8_t *out) {
  float amax = fabsf(x[0]), maxv = x[0];
  for (int i = 1; i < 32; i++) {
    if (fabsf(x[i]) > amax) {
      amax = fabsf(x[i]);
      maxv = x[i];
    }
  }
  float d = maxv / -8;
  float id = d == 0 ? 0 : 1 / d;
  store_half(out, d);
  for (int j = 0; j < 16; j++) out[2 + j] = nibble(x[j] * id + 8.5f) | (uint8_t)(nibble(x[j + 16] * id + 8.5f) << 4);
}

/// Swift.min / Swift.max: `y < x ? y : x`, `y >= x ? y : x`.
static inline float smin(float x, float y) { return y < x ? y : x; }
static inline float smax(float x, float y) { return y >= x ? y : x; }

static void q4_1_finish(const float *x, float lo, float hi, uint8_t *out) {
  float d = (hi - lo) / 15;
  float id = d == 0 ? 0 : 1 / d;
  store_half(out, d);
  store_half(out + 2, lo);
  for (int j = 0; j < 16; j++)
    out[4 + j] = nibble((x[j] - lo) * id + 0.5f) | (uint8_t)(nibble((x[j + 16] - lo) * id + 0.5f) << 4);
}

static void q4_1_portable(const float *x, uint8_t *out) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < 32; i++) {
    lo = smin(lo, x[i]);
    hi = smax(hi, x[i]);
  }
  q4_1_finish(x, lo, hi, out);
}

// MARK: AVX2 bodies

#if defined(__x86_64__)
#define AVX2 __attribute__((target("avx2")))

AVX2 static inline __m256 abs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

/// The largest lane by `a > m ? a : m` (no NaN among the lanes).
AVX2 static inline float hmax8(__m256 m) {
  __m128 a = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  a = _mm_max_ps(a, _mm_movehl_ps(a, a));
  a = _mm_max_ss(a, _mm_shuffle_ps(a, a, 1));
  return _mm_cvtss_f32(a);
}

/// min(15, trunc(t)) per lane for t > 0, 0 where t is not > 0 (NaN too).
AVX2 static inline __m256i nibbles8(__m256 t) {
  __m256 pos = _mm256_cmp_ps(t, _mm256_setzero_ps(), _CMP_GT_OQ);
  __m256 c = _mm256_and_ps(_mm256_min_ps(t, _mm256_set1_ps(15.5f)), pos);
  return _mm256_cvttps_epi32(c);
}

/// 16 int32 lanes (a: elements 0-7, b: 8-15), each in 0..255 or -128..127, to 16 bytes.
AVX2 static inline void store16(__m256i a, __m256i b, uint8_t *out, int is_signed) {
  __m256i p16 = _mm256_packs_epi32(a, b);  // [a0-3 b0-3 | a4-7 b4-7]
  __m256i p8 = is_signed ? _mm256_packs_epi16(p16, p16) : _mm256_packus_epi16(p16, p16);
  __m256i ordered = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0));
  _mm_storeu_si128((__m128i *)out, _mm256_castsi256_si128(ordered));
}

/// round_half_away per lane (as `round_half_away`: |s| ≥ 1024 and NaN give 0).
AVX2 static inline __m256i round_away8(__m256 s) {
  __m256 a = abs8(s);
  a = _mm256_and_ps(a, _mm256_cmp_ps(a, _mm256_set1_ps(1024), _CMP_LT_OQ));
  __m256 fl = _mm256_floor_ps(a);
  __m256 up = _mm256_and_ps(_mm256_cmp_ps(_mm256_sub_ps(a, fl), _mm256_set1_ps(0.5f), _CMP_GE_OQ), _mm256_set1_ps(1));
  __m256 b = _mm256_add_ps(fl, up);
  __m256 neg = _mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_LT_OQ);
  b = _mm256_blendv_ps(b, _mm256_sub_ps(_mm256_setzero_ps(), b), neg);
  return _mm256_cvttps_epi32(b);
}

AVX2 static void q8_0_avx2(const float *x, uint8_t *out) {
  __m256 v[4], m = _mm256_setzero_ps();
  for (int k = 0; k < 4; k++) {
    v[k] = _mm256_loadu_ps(x + 8 * k);
    m = _mm256_max_ps(abs8(v[k]), m);  // NaN lanes never win
  }
  float amax = hmax8(m);
  float d = amax / 127;
  float id = d == 0 ? 0 : 1 / d;
  store_half(out, d);
  __m256 idv = _mm256_set1_ps(id);
  __m256i q[4];
  for (int k = 0; k < 4; k++) q[k] = round_away8(_mm256_mul_ps(v[k], idv));
  store16(q[0], q[1], out + 2, 1);
  store16(q[2], q[3], out + 18, 1);
}

AVX2 static void q4_0_avx2(const float *x, uint8_t *out) {
  float maxv = x[0];
  __m256 v[4];
  for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(x + 8 * k);
  if (!isnan(x[0])) {
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) m = _mm256_max_ps(abs8(v[k]), m);
    __m256 amax = _mm256_set1_ps(hmax8(m));
    // numpy's argmax: the first index of the largest magnitude (branch-free).
    uint32_t mask = 0;
    for (int k = 0; k < 4; k++)
      mask |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(abs8(v[k]), amax, _CMP_EQ_OQ)) << (8 * k);
    maxv = x[__builtin_ctz(mask | 0x80000000u)];
  }
  float d = maxv * -0.125f;  // = maxv / -8 exactly (a power of two)
  float id = d == 0 ? 0 : 1 / d;
  store_half(out, d);
  __m256 idv = _mm256_set1_ps(id), h = _mm256_set1_ps(8.5f);
  __m256i n[4];
  for (int k = 0; k < 4; k++) n[k] = nibbles8(_mm256_add_ps(_mm256_mul_ps(v[k], idv), h));
  store16(_mm256_or_si256(n[0], _mm256_slli_epi32(n[2], 4)), _mm256_or_si256(n[1], _mm256_slli_epi32(n[3], 4)), out + 2, 0);
}

/// Lane b of the result is the largest lane of m[b] (no NaN among the lanes): eight
/// horizontal maxima in one transpose-and-max instead of eight reductions.
AVX2 static inline __m256 hmax8x8(const __m256 m[8]) {
  __m256 a[4], b[2];
  for (int k = 0; k < 4; k++)
    a[k] = _mm256_max_ps(_mm256_unpacklo_ps(m[2 * k], m[2 * k + 1]), _mm256_unpackhi_ps(m[2 * k], m[2 * k + 1]));
  for (int k = 0; k < 2; k++)
    b[k] = _mm256_max_ps(_mm256_shuffle_ps(a[2 * k], a[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm256_shuffle_ps(a[2 * k], a[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  return _mm256_max_ps(_mm256_permute2f128_ps(b[0], b[1], 0x20), _mm256_permute2f128_ps(b[0], b[1], 0x31));
}

/// Eight Q4_0 blocks at once, each the bits of `q4_0_avx2`: the blocks' maxima, scales and
/// reciprocals are computed eight at a time (one division instead of eight), the nibbles a
/// block at a time as there.
AVX2 static void q4_0_avx2_x8(const float *x, uint8_t *out) {
  __m256 m[8];
  for (int b = 0; b < 8; b++) {
    __m256 mb = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) mb = _mm256_max_ps(abs8(_mm256_loadu_ps(x + 32 * b + 8 * k)), mb);  // NaN lanes never win
    m[b] = mb;
  }
  __m256 amax = hmax8x8(m);
  float maxv[8];
  for (int b = 0; b < 8; b++) {
    const float *xb = x + 32 * b;
    maxv[b] = xb[0];
    if (!isnan(xb[0])) {
      __m256 a = _mm256_permutevar8x32_ps(amax, _mm256_set1_epi32(b));
      // numpy's argmax: the first index of the largest magnitude (branch-free).
      uint32_t mask = 0;
      for (int k = 0; k < 4; k++)
        mask |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(abs8(_mm256_loadu_ps(xb + 8 * k)), a, _CMP_EQ_OQ)) << (8 * k);
      maxv[b] = xb[__builtin_ctz(mask | 0x80000000u)];
    }
  }
  __m256 d = _mm256_mul_ps(_mm256_loadu_ps(maxv), _mm256_set1_ps(-0.125f));  // = maxv / -8 exactly
  __m256 id = _mm256_div_ps(_mm256_set1_ps(1), d);
  id = _mm256_andnot_ps(_mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_EQ_OQ), id);  // d == 0 ? 0 : 1 / d
  float ds[8];
  _mm256_storeu_ps(ds, d);
  __m256 h = _mm256_set1_ps(8.5f);
  for (int b = 0; b < 8; b++) {
    const float *xb = x + 32 * b;
    uint8_t *ob = out + 18 * b;
    store_half(ob, ds[b]);
    __m256 idv = _mm256_permutevar8x32_ps(id, _mm256_set1_epi32(b));
    __m256i n[4];
    for (int k = 0; k < 4; k++) n[k] = nibbles8(_mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + 8 * k), idv), h));
    store16(_mm256_or_si256(n[0], _mm256_slli_epi32(n[2], 4)), _mm256_or_si256(n[1], _mm256_slli_epi32(n[3], 4)), ob + 2, 0);
  }
}

/// Eight Q8_0 blocks at once, each the bits of `q8_0_avx2`: maxima, scales and reciprocals
/// eight at a time (two divisions instead of sixteen), the codes a block at a time as there.
AVX2 static void q8_0_avx2_x8(const float *x, uint8_t *out) {
  __m256 m[8];
  for (int b = 0; b < 8; b++) {
    __m256 mb = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) mb = _mm256_max_ps(abs8(_mm256_loadu_ps(x + 32 * b + 8 * k)), mb);  // NaN lanes never win
    m[b] = mb;
  }
  __m256 d = _mm256_div_ps(hmax8x8(m), _mm256_set1_ps(127));
  __m256 id = _mm256_div_ps(_mm256_set1_ps(1), d);
  id = _mm256_andnot_ps(_mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_EQ_OQ), id);  // d == 0 ? 0 : 1 / d
  float ds[8];
  _mm256_storeu_ps(ds, d);
  for (int b = 0; b < 8; b++) {
    const float *xb = x + 32 * b;
    uint8_t *ob = out + 34 * b;
    store_half(ob, ds[b]);
    __m256 idv = _mm256_permutevar8x32_ps(id, _mm256_set1_epi32(b));
    __m256i q[4];
    for (int k = 0; k < 4; k++) q[k] = round_away8(_mm256_mul_ps(_mm256_loadu_ps(xb + 8 * k), idv));
    store16(q[0], q[1], ob + 2, 1);
    store16(q[2], q[3], ob + 18, 1);
  }
}

AVX2 static void q4_1_avx2(const float *x, uint8_t *out) {
  __m256 v[4];
  __m256 lo = _mm256_set1_ps(x[0]), hi = lo;
  for (int k = 0; k < 4; k++) {
    v[k] = _mm256_loadu_ps(x + 8 * k);
    lo = _mm256_min_ps(v[k], lo);  // v < lo ? v : lo
    hi = _mm256_max_ps(v[k], hi);  // v > hi ? v : hi
  }
  float l[8], u[8];
  _mm256_storeu_ps(l, lo);
  _mm256_storeu_ps(u, hi);
  float mn = l[0], mx = u[0];
  for (int i = 1; i < 8; i++) {
    mn = smin(mn, l[i]);
    mx = smax(mx, u[i]);
  }
  if (mn == 0 || mx == 0) {
    // ±0 ties: which zero wins depends on the scan order, so scan in element order.
    q4_1_portable(x, out);
    return;
  }
  float d = (mx - mn) / 15;
  float id = d == 0 ? 0 : 1 / d;
  store_half(out, d);
  store_half(out + 2, mn);
  __m256 idv = _mm256_set1_ps(id), mv = _mm256_set1_ps(mn), h = _mm256_set1_ps(0.5f);
  __m256i n[4];
  for (int k = 0; k < 4; k++) n[k] = nibbles8(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v[k], mv), idv), h));
  store16(_mm256_or_si256(n[0], _mm256_slli_epi32(n[2], 4)), _mm256_or_si256(n[1], _mm256_slli_epi32(n[3], 4)), out + 4, 0);
}
#endif

void qopt_encode_q8_0(const float *x, size_t nblocks, uint8_t *out) {
#if defined(__x86_64__)
  if (codecs_have_avx2()) {
    size_t b = 0;
    for (; b + 8 <= nblocks; b += 8) q8_0_avx2_x8(x + 32 * b, out + 34 * b);
    for (; b < nblocks; b++) q8_0_avx2(x + 32 * b, out + 34 * b);
    return;
  }
#endif
  for (size_t b = 0; b < nblocks; b++) q8_0_portable(x + 32 * b, out + 34 * b);
}

void qopt_encode_q4_0(const float *x, size_t nblocks, uint8_t *out) {
#if defined(__x86_64__)
  if (codecs_have_avx2()) {
    size_t b = 0;
    for (; b + 8 <= nblocks; b += 8) q4_0_avx2_x8(x + 32 * b, out + 18 * b);
    for (; b < nblocks; b++) q4_0_avx2(x + 32 * b, out + 18 * b);
    return;
  }
#endif
  for (size_t b = 0; b < nblocks; b++) q4_0_portable(x + 32 * b, out + 18 * b);
}

void qopt_encode_q4_1(const float *x, size_t nblocks, uint8_t *out) {
#if defined(__x86_64__)
  if (codecs_have_avx2()) {
    for (size_t b = 0; b < nblocks; b++) q4_1_avx2(x + 32 * b, out + 20 * b);
    return;
  }
#endif
  for (size_t b = 0; b < nblocks; b++) q4_1_portable(x + 32 * b, out + 20 * b);
}

void qopt_encode_portable(int kind, const float *x, size_t nblocks, uint8_t *out) {
  for (size_t b = 0; b < nblocks; b++) {
    if (kind == 0) q8_0_portable(x + 32 * b, out + 34 * b);
    else if (kind == 1) q4_0_portable(x + 32 * b, out + 18 * b);
    else q4_1_portable(x + 32 * b, out + 20 * b);
  }
}

// MARK: decoders (what gguf.quants.dequantize computes)

static inline uint16_t load16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

#if defined(__x86_64__)
// Eight lanes per step instead of the four the compiler picks for the portable loops: each
// lane is the same multiply, then add, as the scalar body (contraction is off in this file).

AVX2 static void decode_q8_0_avx2(const uint8_t *src, size_t nblocks, float *y) {
  for (size_t b = 0; b < nblocks; b++, src += 34, y += 32) {
    __m256 dv = _mm256_set1_ps(f16_to_float(load16(src)));
    for (int k = 0; k < 4; k++) {
      __m128i q = _mm_loadl_epi64((const __m128i *)(src + 2 + 8 * k));
      _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
    }
  }
}

AVX2 static void decode_q4_avx2(const uint8_t *src, size_t nblocks, float *y, int has_min) {
  size_t bb = has_min ? 20 : 18;
  const __m128i low = _mm_set1_epi8(0xF);
  for (size_t b = 0; b < nblocks; b++, src += bb, y += 32) {
    float d = f16_to_float(load16(src));
    float m = has_min ? f16_to_float(load16(src + 2)) : -8 * d;
    __m256 dv = _mm256_set1_ps(d), mv = _mm256_set1_ps(m);
    __m128i q = _mm_loadu_si128((const __m128i *)(src + (has_min ? 4 : 2)));
    __m128i lo = _mm_and_si128(q, low), hi = _mm_and_si128(_mm_srli_epi16(q, 4), low);
    __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; k++) {
      __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[k]));
      _mm256_storeu_ps(y + 8 * k, _mm256_add_ps(_mm256_mul_ps(dv, v), mv));
    }
  }
}
#endif

void qopt_decode_q8_0(const uint8_t *src, size_t nblocks, float *y) {
#if defined(__x86_64__)
  if (codecs_have_avx2()) {
    decode_q8_0_avx2(src, nblocks, y);
    return;
  }
#endif
  for (size_t b = 0; b < nblocks; b++, src += 34, y += 32) {
    float d = f16_to_float(load16(src));
    for (int k = 0; k < 32; k++) y[k] = d * (float)(int8_t)src[2 + k];
  }
}

void qopt_decode_q4(const uint8_t *src, size_t nblocks, float *y, int has_min) {
#if defined(__x86_64__)
  if (codecs_have_avx2()) {
    decode_q4_avx2(src, nblocks, y, has_min);
    return;
  }
#endif
  size_t bb = has_min ? 20 : 18;
  for (size_t b = 0; b < nblocks; b++, src += bb, y += 32) {
    float d = f16_to_float(load16(src));
    float m = has_min ? f16_to_float(load16(src + 2)) : -8 * d;
    const uint8_t *qs = src + (has_min ? 4 : 2);
    for (int j = 0; j < 16; j++) {
      y[j] = d * (float)(qs[j] & 0xF) + m;
      y[j + 16] = d * (float)(qs[j] >> 4) + m;
    }
  }
}
