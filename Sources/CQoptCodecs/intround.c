// The inner loops of integer round-to-nearest (`rtn`, IntQuantizer): a group's range, and
// divide-clamp-round into int8 codes. Every vector operation is the scalar one it replaces
// (compare-and-select in the scalar's operand order, add and subtract never fused), and the
// quotient is the correctly rounded one (see `quotient`), so the AVX2 body gives the bits of the
// portable one; the tests compare both on adversarial groups.
#pragma clang fp contract(off)

#include "CQoptCodecs.h"
#include "cpu.h"
#include "halffloat.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define QOPT_AVX2 __attribute__((target("avx2")))
#endif

static const float magic = 12582912.0f; /* 1.5 * 2^23: (x + magic) - magic rounds half to even */

/* ---- portable bodies --------------------------------------------------------------------- */

static void range_portable(const float *w, size_t n, float *lo, float *hi) {
  float l = 0, h = 0;
  for (size_t i = 0; i < n; i++) {
    l = w[i] < l ? w[i] : l;
    h = w[i] > h ? w[i] : h;
  }
  *lo = l;
  *hi = h;
}

/* float → int32 as cvttss2si does (NaN and out-of-range give INT32_MIN), then the low byte. */
static inline int8_t low_byte(float r) {
  int32_t v = (r >= -2147483648.0f && r < 2147483648.0f) ? (int32_t)r : INT32_MIN;
  return (int8_t)(uint8_t)(uint32_t)v;
}

/* The clamps are written `x > lo ? x : lo`, so a NaN weight takes the lower bound (and gives
   the code of `lo`) on every body. */
static void round_before_portable(const float *w, size_t n, float s, float plus, float lo, float hi, int8_t *q) {
  for (size_t i = 0; i < n; i++) {
    float x = w[i] / s + plus;
    x = x > lo ? x : lo;
    x = x < hi ? x : hi;
    q[i] = low_byte((x + magic) - magic);
  }
}

static void round_after_portable(const float *w, size_t n, float s, float plus, float lo, float hi, int8_t *q) {
  for (size_t i = 0; i < n; i++) {
    float x = w[i] / s;
    x = x > -4194304.0f ? x : -4194304.0f;
    x = x < 4194304.0f ? x : 4194304.0f;
    float r = (x + magic) - magic + plus;
    r = r > lo ? r : lo;
    r = r < hi ? r : hi;
    q[i] = low_byte(r);
  }
}

/* ---- AVX2 bodies ------------------------------------------------------------------------- */

#if defined(__x86_64__)
/* `v < l ? v : l` is min_ps(v, l) and `x > b ? x : b` is max_ps(x, b): the second operand is
   returned on NaN, as the scalar select does. */
QOPT_AVX2 static void range_avx2(const float *w, size_t n, float *lo, float *hi) {
  __m256 l = _mm256_setzero_ps(), h = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(w + i);
    l = _mm256_min_ps(v, l); /* v < l ? v : l */
    h = _mm256_max_ps(v, h); /* v > h ? v : h */
  }
  float ls[8], hs[8];
  _mm256_storeu_ps(ls, l);
  _mm256_storeu_ps(hs, h);
  float a = 0, b = 0;
  for (int k = 0; k < 8; k++) {
    a = ls[k] < a ? ls[k] : a;
    b = hs[k] > b ? hs[k] : b;
  }
  for (; i < n; i++) {
    a = w[i] < a ? w[i] : a;
    b = w[i] > b ? w[i] : b;
  }
  *lo = a;
  *hi = b;
}

/* Division is most of the loop's time (Zen 1 divides 8 floats in ~24 cycles), so the quotient
   is computed from the reciprocal and corrected (Markstein): y = RN(1/s), q0 = RN(w·y),
   r = w − s·q0 (exact, by FMA), q = RN(q0 + r·y). With y the correctly rounded reciprocal and q0
   within an ulp of w/s, q is the correctly rounded quotient RN(w/s) — the division's own bits —
   when nothing overflows: the caller checks max|w|·|y| <= 2^100 for the whole group, and
   quotients too small for the correction to be exact (|w/s| < 2^-100) round to the same integer
   either way. */
#define QOPT_AVX2_FMA __attribute__((target("avx2,fma")))

QOPT_AVX2_FMA static inline __m256 quotient(__m256 wv, __m256 sv, __m256 yv) {
  __m256 q0 = _mm256_mul_ps(wv, yv);
  __m256 r = _mm256_fnmadd_ps(sv, q0, wv);
  return _mm256_fmadd_ps(r, yv, q0);
}

/* 8 int32 lanes, each already in [lo, hi] ⊂ [−32768, 32767], as bytes (their low bytes). */
QOPT_AVX2_FMA static inline void store_codes(__m256i v, int unsigned_range, int8_t *q) {
  __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  __m128i p8 = unsigned_range ? _mm_packus_epi16(p16, p16) : _mm_packs_epi16(p16, p16);
  _mm_storel_epi64((__m128i *)q, p8);
}

/* |s| within [2^-60, 2^60] and every |w|·|1/s| <= 2^100 (amax = max |w| of the group). */
static inline int moderate(float s, float amax) {
  float a = s < 0 ? -s : s;
  return a >= 0x1p-60f && a <= 0x1p60f && amax * (1.0f / a) <= 0x1p100f;
}

/* After the clamps x lies in [lo, hi] (integers within ±32767), so converting with the default
   round-to-nearest-even mode (cvtps2dq) is the portable body's (x + magic) − magic followed by
   truncation. */
QOPT_AVX2_FMA static void round_before_avx2(const float *w, size_t n, float s, float plus, float lo, float hi, float amax, int8_t *q) {
  if (!moderate(s, amax) || lo < -32768 || hi > 32767) { round_before_portable(w, n, s, plus, lo, hi, q); return; }
  __m256 sv = _mm256_set1_ps(s), pv = _mm256_set1_ps(plus), lv = _mm256_set1_ps(lo), hv = _mm256_set1_ps(hi);
  __m256 yv = _mm256_set1_ps(1.0f / s);
  int uns = lo >= 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 x = _mm256_add_ps(quotient(_mm256_loadu_ps(w + i), sv, yv), pv);
    x = _mm256_max_ps(x, lv);
    x = _mm256_min_ps(x, hv);
    store_codes(_mm256_cvtps_epi32(x), uns, q + i);
  }
  round_before_portable(w + i, n - i, s, plus, lo, hi, q + i);
}

QOPT_AVX2_FMA static void round_after_avx2(const float *w, size_t n, float s, float plus, float lo, float hi, float amax, int8_t *q) {
  if (!moderate(s, amax) || lo < -32768 || hi > 32767) { round_after_portable(w, n, s, plus, lo, hi, q); return; }
  __m256 sv = _mm256_set1_ps(s), pv = _mm256_set1_ps(plus), lv = _mm256_set1_ps(lo), hv = _mm256_set1_ps(hi);
  __m256 big = _mm256_set1_ps(4194304.0f), nbig = _mm256_set1_ps(-4194304.0f);
  __m256 yv = _mm256_set1_ps(1.0f / s);
  int uns = lo >= 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 x = quotient(_mm256_loadu_ps(w + i), sv, yv);
    x = _mm256_max_ps(x, nbig);
    x = _mm256_min_ps(x, big);
    __m256 r = _mm256_add_ps(_mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), pv);
    r = _mm256_max_ps(r, lv);
    r = _mm256_min_ps(r, hv);
    store_codes(_mm256_cvttps_epi32(r), uns, q + i);
  }
  round_after_portable(w + i, n - i, s, plus, lo, hi, q + i);
}
#endif

/* ---- entry points ------------------------------------------------------------------------ */

void qopt_int_range(const float *w, size_t n, float *lo, float *hi, int portable) {
#if defined(__x86_64__)
  if (!portable && codecs_have_avx2_fma()) { range_avx2(w, n, lo, hi); return; }
#endif
  range_portable(w, n, lo, hi);
}

void qopt_int_round_clamp_before(const float *w, size_t n, float s, float plus, float lo, float hi, float wmax, int8_t *q, int portable) {
#if defined(__x86_64__)
  if (!portable && codecs_have_avx2_fma()) { round_before_avx2(w, n, s, plus, lo, hi, wmax, q); return; }
#endif
  round_before_portable(w, n, s, plus, lo, hi, q);
}

void qopt_int_round_clamp_after(const float *w, size_t n, float s, float plus, float lo, float hi, float wmax, int8_t *q, int portable) {
#if defined(__x86_64__)
  if (!portable && codecs_have_avx2_fma()) { round_after_avx2(w, n, s, plus, lo, hi, wmax, q); return; }
#endif
  round_after_portable(w, n, s, plus, lo, hi, q);
}

/* ---- a row of symmetric full-range groups -------------------------------------------------- */

/* x rounded to the scale dtype (0: f32, 1: f16, 2: bf16), as QoptIR's `roundFloat`. */
static inline float round_scale(float x, int scale_type) {
  if (scale_type == 1) return f16_to_float(half_bits(x));
  if (scale_type != 2) return x;
  uint32_t r = (uint32_t)bf16_bits(x) << 16;
  float f;
  memcpy(&f, &r, 4);
  return f;
}

#if defined(__x86_64__)
/* Eight full groups of a row at once (`group` a multiple of 8): their ranges, then the scale
   arithmetic for all eight in one set of vector operations (a division a group was most of the
   time at group 64), then the rounding. Each vector operation is the scalar one of the loop
   below in the same operand order (compare-and-select, IEEE division, the same bf16 rounding in
   integers), so the scales and codes are its bits; f16 scales take the scalar rounding lane by
   lane. */
/* max_ps or min_ps, chosen by a constant after inlining. */
QOPT_AVX2_FMA static inline __m256 pick(__m256 x, __m256 y, int max) { return max ? _mm256_max_ps(x, y) : _mm256_min_ps(x, y); }

/* Lane k of the result: the minimum (or maximum) of a[k]'s lanes. No lane holds a NaN or −0
   (range_avx2's accumulators start at +0 and min_ps/max_ps keep the accumulator on NaN or equal
   zeros), so any order gives the same value. */
QOPT_AVX2_FMA static inline __m256 hreduce8(__m256 a[8], int max) {
  __m256 t0 = pick(_mm256_unpacklo_ps(a[0], a[1]), _mm256_unpackhi_ps(a[0], a[1]), max);
  __m256 t1 = pick(_mm256_unpacklo_ps(a[2], a[3]), _mm256_unpackhi_ps(a[2], a[3]), max);
  __m256 t2 = pick(_mm256_unpacklo_ps(a[4], a[5]), _mm256_unpackhi_ps(a[4], a[5]), max);
  __m256 t3 = pick(_mm256_unpacklo_ps(a[6], a[7]), _mm256_unpackhi_ps(a[6], a[7]), max);
  /* t0 = [a0 a1 a0 a1 | a0 a1 a0 a1] partial results (two per group per 128-bit half) */
  __m256 u0 = pick(_mm256_shuffle_ps(t0, t1, 0x44), _mm256_shuffle_ps(t0, t1, 0xEE), max);
  __m256 u1 = pick(_mm256_shuffle_ps(t2, t3, 0x44), _mm256_shuffle_ps(t2, t3, 0xEE), max);
  /* u0 = [a0 a1 a2 a3 | a0 a1 a2 a3], u1 likewise for a4..a7: fold the 128-bit halves */
  __m256 lo = _mm256_permute2f128_ps(u0, u1, 0x20), hi = _mm256_permute2f128_ps(u0, u1, 0x31);
  return pick(lo, hi, max);
}

/* round_after_avx2 with y = 1/s given, no zero point and codes within int8 (n a multiple of 8), in fewer
   operations that give the same codes: with `plus` = 0 the first clamp (to ±2^22, for the
   portable body's magic-number rounding) changes nothing that the clamp to [lo, hi] ⊂ [−128, 127]
   does not (rounding is monotonic and lo, hi are integers; a NaN quotient takes lo either way,
   as max_ps returns its second operand), and clamping before the round-to-nearest-even
   conversion equals rounding before the clamp for the same reasons. 32 codes are packed and
   stored at once. */
QOPT_AVX2_FMA static inline __m256i codes8(const float *w, __m256 sv, __m256 yv, __m256 lv, __m256 hv) {
  __m256 x = quotient(_mm256_loadu_ps(w), sv, yv);
  x = _mm256_max_ps(x, lv);
  x = _mm256_min_ps(x, hv);
  return _mm256_cvtps_epi32(x);
}

QOPT_AVX2_FMA static inline void round_sym_avx2(const float *w, size_t n, float s, float y, float lo, float hi, int8_t *q) {
  __m256 sv = _mm256_set1_ps(s), yv = _mm256_set1_ps(y), lv = _mm256_set1_ps(lo), hv = _mm256_set1_ps(hi);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i a = codes8(w + i, sv, yv, lv, hv), b = codes8(w + i + 8, sv, yv, lv, hv);
    __m256i c = codes8(w + i + 16, sv, yv, lv, hv), d = codes8(w + i + 24, sv, yv, lv, hv);
    /* packs keep each 128-bit half apart: dwords come out a0-3 b0-3 c0-3 d0-3 | a4-7 ... */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    _mm256_storeu_si256((__m256i *)(q + i), _mm256_permutevar8x32_epi32(p, order));
  }
  for (; i < n; i += 8) store_codes(codes8(w + i, sv, yv, lv, hv), 0, q + i);
}

/* `c ? a : b` lane by lane. */
QOPT_AVX2_FMA static inline __m256 sel8(__m256 c, __m256 a, __m256 b) { return _mm256_blendv_ps(b, a, c); }

/* round_scale(x, 2) on 8 lanes. */
QOPT_AVX2_FMA static inline __m256 round_bf16(__m256 x) { return _mm256_castsi256_ps(_mm256_slli_epi32(bf16_lanes(x), 16)); }

QOPT_AVX2_FMA static void rtn_sym_groups8_avx2(const float *w, size_t group, size_t count, int bits, int scale_type, float thresh, int8_t *q, float *scales) {
  const float maxq = (float)(1 << (bits - 1));
  __m256 lanes_lo[8], lanes_hi[8];
  for (size_t k = 0; k < 8; k++) {
    __m256 l = _mm256_setzero_ps(), h = _mm256_setzero_ps();
    if (k < count) {
      const float *g = w + k * group;
      for (size_t i = 0; i < group; i += 8) {
        __m256 v = _mm256_loadu_ps(g + i);
        l = _mm256_min_ps(v, l);
        h = _mm256_max_ps(v, h);
      }
    }
    lanes_lo[k] = l;
    lanes_hi[k] = h;
  }
  const __m256 signbit = _mm256_set1_ps(-0.0f);
  __m256 lo = hreduce8(lanes_lo, 0), hi = hreduce8(lanes_hi, 1);
  __m256 wmin_abs = _mm256_xor_ps(lo, signbit), nhi = _mm256_xor_ps(hi, signbit);
  __m256 maxv = sel8(_mm256_cmp_ps(hi, wmin_abs, _CMP_LT_OQ), wmin_abs, nhi);
  __m256 s = _mm256_div_ps(maxv, _mm256_set1_ps(maxq));
  if (scale_type == 2) {
    s = round_bf16(s);
  } else if (scale_type == 1) {
    float t[8];
    _mm256_storeu_ps(t, s);
    for (int k = 0; k < 8; k++) t[k] = round_scale(t[k], 1);
    s = _mm256_loadu_ps(t);
  }
  __m256 tv = _mm256_set1_ps(thresh), ntv = _mm256_set1_ps(-thresh);
  __m256 neg = sel8(_mm256_cmp_ps(ntv, s, _CMP_LT_OQ), ntv, s);  /* -thresh < s ? -thresh : s */
  __m256 pos = sel8(_mm256_cmp_ps(tv, s, _CMP_GE_OQ), tv, s);   /* thresh >= s ? thresh : s */
  s = sel8(_mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_LT_OQ), neg, pos);
  __m256 wmax = sel8(_mm256_cmp_ps(hi, wmin_abs, _CMP_GE_OQ), hi, wmin_abs);  /* hi >= -lo ? hi : -lo */
  /* `moderate(s, wmax)` and 1/s, as round_after_avx2 computes them a group at a time. */
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 a = _mm256_andnot_ps(signbit, s);
  __m256 ok = _mm256_and_ps(
    _mm256_and_ps(_mm256_cmp_ps(a, _mm256_set1_ps(0x1p-60f), _CMP_GE_OQ), _mm256_cmp_ps(a, _mm256_set1_ps(0x1p60f), _CMP_LE_OQ)),
    _mm256_cmp_ps(_mm256_mul_ps(wmax, _mm256_div_ps(one, a)), _mm256_set1_ps(0x1p100f), _CMP_LE_OQ));
  __m256 y = _mm256_div_ps(one, s);
  float sv[8], yv[8];
  _mm256_storeu_ps(sv, s);
  _mm256_storeu_ps(yv, y);
  int okmask = _mm256_movemask_ps(ok);
  for (size_t k = 0; k < count; k++) {
    if (okmask >> k & 1) round_sym_avx2(w + k * group, group, sv[k], yv[k], -maxq, maxq - 1, q + k * group);
    else round_after_portable(w + k * group, group, sv[k], 0, -maxq, maxq - 1, q + k * group);
    scales[k] = sv[k];
  }
}
#endif

void qopt_int_rtn_sym_row(const float *w, size_t cols, size_t group, int bits, int scale_type, float thresh, int8_t *q, float *scales, int portable) {
  const float maxq = (float)(1 << (bits - 1));
  size_t first = 0;
#if defined(__x86_64__)
  if (!portable && codecs_have_avx2_fma() && group % 8 == 0 && group > 0 && bits <= 8) {
    size_t full = cols / group;
    for (size_t g = 0; g < full; g += 8) {
      size_t count = full - g < 8 ? full - g : 8;
      rtn_sym_groups8_avx2(w + g * group, group, count, bits, scale_type, thresh, q + g * group, scales + g);
    }
    first = full * group;
  }
#endif
  for (size_t start = first, g = first / (group ? group : 1); start < cols; start += group, g++) {
    size_t n = cols - start < group ? cols - start : group;
    float lo, hi;
    qopt_int_range(w + start, n, &lo, &hi, portable);
    /* IntQuantizer.quantizeGroup, case (.fullRange, true), operation for operation. */
    float wmin_abs = -lo;
    float maxv = hi < wmin_abs ? wmin_abs : -hi;
    float s = round_scale(maxv / maxq, scale_type);
    s = s < 0 ? (-thresh < s ? -thresh : s) : (thresh >= s ? thresh : s);
    float wmax = hi >= -lo ? hi : -lo;
    qopt_int_round_clamp_after(w + start, n, s, 0, -maxq, maxq - 1, wmax, q + start, portable);
    scales[g] = s;
  }
}
