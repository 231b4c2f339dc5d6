// Which vector bodies this CPU can run, asked once (private to CQoptCodecs). Every codec with
// an AVX2 body picks it here, so the choice is the same one everywhere.
#ifndef CQOPT_CODECS_CPU_H
#define CQOPT_CODECS_CPU_H

#if defined(__x86_64__)
static inline int codecs_have_avx2(void) {
  static int cached = -1;
  if (cached < 0) cached = __builtin_cpu_supports("avx2") ? 1 : 0;
  return cached;
}

/// AVX2 and FMA together (the rounding bodies use fused multiply-adds).
static inline int codecs_have_avx2_fma(void) {
  static int cached = -1;
  if (cached < 0) cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
  return cached;
}
#else
static inline int codecs_have_avx2(void) { return 0; }
static inline int codecs_have_avx2_fma(void) { return 0; }
#endif

#endif
