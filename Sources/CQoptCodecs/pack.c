// compressed-tensors' int4 `pack_to_int32` inner loop: eight signed codes to a word, code j of a
// word (offset by +8) in bits 4j..4j+3 — the same as two codes to a byte, little end first.
// The AVX2 body gives the portable body's bytes (the tests compare both).

#include "CQoptCodecs.h"
#include "cpu.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static void pack_int4_portable(const int8_t *codes, size_t n, uint8_t *out) {
  for (size_t k = 0; k < n / 2; k++) {
    uint8_t a = (uint8_t)((codes[2 * k] + 8) & 0xF), b = (uint8_t)((codes[2 * k + 1] + 8) & 0xF);
    out[k] = (uint8_t)(a | (b << 4));
  }
}

static void unpack_int4_portable(const uint8_t *packed, size_t n, int8_t *codes) {
  for (size_t i = 0; i + 1 < n; i += 2) {
    codes[i] = (int8_t)((packed[i / 2] & 0xF) - 8);
    codes[i + 1] = (int8_t)((packed[i / 2] >> 4) - 8);
  }
}

#if defined(__x86_64__)
/* 64 codes a step: (c + 8) & 0xF in bytes (the low nibble plus 8 cannot carry out of it), then
   each byte pair as lo + 16·hi (maddubs: unsigned codes × signed 1, 16; at most 255), then the
   16-bit sums narrowed to bytes (packus keeps 128-bit halves apart: the permute restores order). */
__attribute__((target("avx2"))) static void pack_int4_avx2(const int8_t *codes, size_t n, uint8_t *out) {
  const __m256i low = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8), weights = _mm256_set1_epi16(0x1001);
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m256i a = _mm256_loadu_si256((const __m256i *)(codes + i));
    __m256i b = _mm256_loadu_si256((const __m256i *)(codes + i + 32));
    a = _mm256_and_si256(_mm256_add_epi8(_mm256_and_si256(a, low), eight), low);
    b = _mm256_and_si256(_mm256_add_epi8(_mm256_and_si256(b, low), eight), low);
    __m256i p = _mm256_packus_epi16(_mm256_maddubs_epi16(a, weights), _mm256_maddubs_epi16(b, weights));
    _mm256_storeu_si256((__m256i *)(out + i / 2), _mm256_permute4x64_epi64(p, 0xD8));
  }
  pack_int4_portable(codes + i, n - i, out + i / 2);
}

/* The inverse: byte k → codes 2k (low nibble) and 2k + 1 (high), each minus 8. 32 codes a
   step: the nibbles split, offset, and interleaved back into code order. */
__attribute__((target("avx2"))) static void unpack_int4_avx2(const uint8_t *packed, size_t n, int8_t *codes) {
  const __m128i low = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m128i b = _mm_loadu_si128((const __m128i *)(packed + i / 2));
    __m128i lo = _mm_sub_epi8(_mm_and_si128(b, low), eight);
    __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), low), eight);
    _mm_storeu_si128((__m128i *)(codes + i), _mm_unpacklo_epi8(lo, hi));
    _mm_storeu_si128((__m128i *)(codes + i + 16), _mm_unpackhi_epi8(lo, hi));
  }
  unpack_int4_portable(packed + i / 2, n - i, codes + i);
}
#endif

void qopt_unpack_int4(const uint8_t *packed, size_t n, int8_t *codes, int portable) {
#if defined(__x86_64__)
  if (!portable && codecs_have_avx2()) { unpack_int4_avx2(packed, n, codes); return; }
#endif
  unpack_int4_portable(packed, n, codes);
}

void qopt_pack_int4(const int8_t *codes, size_t n, uint8_t *out, int portable) {
#if defined(__x86_64__)
  if (!portable && codecs_have_avx2()) { pack_int4_avx2(codes, n, out); return; }
#endif
  pack_int4_portable(codes, n, out);
}
