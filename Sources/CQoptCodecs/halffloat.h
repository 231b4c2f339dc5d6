// f32 ⇄ f16 and f32 → bf16 conversions shared by the codecs (private to CQoptCodecs).
// Integer-only and exact, so they give the same bits with or without F16C, and the same as
// QoptIR's `floatToF16` / `f16ToFloat` / `floatToBF16`.
#ifndef CQOPT_HALFFLOAT_H
#define CQOPT_HALFFLOAT_H

#include <stdint.h>
#include <string.h>

/// f32 → f16 bits, round to nearest even, overflow to infinity, NaN quiet with its top payload.
static inline uint16_t half_bits(float v) {
  uint32_t x;
  memcpy(&x, &v, 4);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  x &= 0x7FFFFFFF;
  if (x >= 0x47800000) {
    if (x > 0x7F800000) return sign | 0x7E00 | (uint16_t)((x & 0x007FFFFF) >> 13);
    return sign | 0x7C00;
  }
  if (x < 0x38800000) {
    float f;
    memcpy(&f, &x, 4);
    f = f + 0.5f;
    uint32_t b;
    memcpy(&b, &f, 4);
    return sign | (uint16_t)(b - 0x3F000000);
  }
  uint32_t odd = (x >> 13) & 1;
  x = x + 0xC8000FFF + odd;
  return sign | (uint16_t)(x >> 13);
}

/// f16 bits → f32, exact.
static inline float f16_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, em = h & 0x7FFF, bits;
  if (em >= 0x7C00) bits = sign | 0x7F800000 | ((em & 0x3FF) << 13);
  else if (em >= 0x0400) bits = sign | ((em << 13) + 0x38000000);
  else {
    float f = (float)em * 5.9604644775390625e-08f;  // em · 2^-24
    memcpy(&bits, &f, 4);
    bits |= sign;
  }
  float r;
  memcpy(&r, &bits, 4);
  return r;
}

/// f32 → bf16 bits, round to nearest even, NaN quieted with its top payload bits (QoptIR's
/// `floatToBF16`).
static inline uint16_t bf16_bits(float x) {
  uint32_t b;
  memcpy(&b, &x, 4);
  if (x != x) return (uint16_t)((b >> 16) | 0x40);
  return (uint16_t)((b + 0x7FFF + ((b >> 16) & 1)) >> 16);
}

#if defined(__x86_64__)
#include <immintrin.h>
/// `bf16_bits` on 8 lanes, each result in the low 16 bits of its 32-bit lane: the same integer
/// steps (no finite input carries past 2^32), NaN lanes replaced after.
__attribute__((target("avx2"))) static inline __m256i bf16_lanes(__m256 x) {
  __m256i b = _mm256_castps_si256(x);
  __m256i odd = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(0x7FFF)), odd), 16);
  __m256i q = _mm256_and_si256(_mm256_or_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(0x40)), _mm256_set1_epi32(0xFFFF));
  __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  return _mm256_blendv_epi8(r, q, nan);
}
#endif

#endif
