// f32 ⇄ f16 conversions shared by the codecs (private to CQoptCodecs). Integer-only and exact,
// so they give the same bits with or without F16C, and the same as QoptIR's `floatToF16` /
// `f16ToFloat`.
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

#endif
