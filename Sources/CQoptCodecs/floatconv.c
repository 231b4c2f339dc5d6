// f32 → bf16, round to nearest even, NaN quieted with its top payload bits kept — QoptIR's
// `floatToBF16` element for element. The AVX2 body does the same integer steps on 8 lanes (the
// tests compare both with the Swift definition on ties, NaNs and infinities).

#include "CQoptCodecs.h"
#include "cpu.h"
#include "halffloat.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static void to_bf16_portable(const float *x, size_t n, uint16_t *out) {
  for (size_t i = 0; i < n; i++) out[i] = bf16_bits(x[i]);
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static void to_bf16_avx2(const float *x, size_t n, uint16_t *out) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i a = bf16_lanes(_mm256_loadu_ps(x + i)), b = bf16_lanes(_mm256_loadu_ps(x + i + 8));
    /* packus keeps 128-bit halves apart: a0-3 b0-3 | a4-7 b4-7 → reorder the 64-bit quarters. */
    __m256i p = _mm256_packus_epi32(a, b);
    _mm256_storeu_si256((__m256i *)(out + i), _mm256_permute4x64_epi64(p, 0xD8));
  }
  to_bf16_portable(x + i, n - i, out + i);
}
#endif

void qopt_f32_to_bf16(const float *x, size_t n, uint16_t *out, int portable) {
#if defined(__x86_64__)
  if (!portable && codecs_have_avx2()) { to_bf16_avx2(x, n, out); return; }
#endif
  to_bf16_portable(x, n, out);
}
