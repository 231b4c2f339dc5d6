#include "CQoptKernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define QOPT_X86 1
#include <immintrin.h>
#endif

/* ---- scalar bodies (any CPU) ---------------------------------------------------------- */

static inline float exp_scalar(float x0) {
  float x1 = fminf(fmaxf(x0, -87.33654f), 88.3762626647949f);
  float t = x1 * 1.44269504088896341f + 12582912.0f;
  float fx = t - 12582912.0f;
  float x = x1 - fx * 0.693359375f;
  x = x + fx * 2.12194440e-4f;
  float z = x * x;
  float y = 1.9875691500e-4f;
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * z + x + 1.0f;
  int32_t tb;
  memcpy(&tb, &t, 4);
  uint32_t e = (uint32_t)(tb - 0x4B400000 + 127) << 23;
  float s;
  memcpy(&s, &e, 4);
  return y * s;
}

static float fma_chains_scalar(long n) {
  float a[10];
  for (int i = 0; i < 10; i++) a[i] = 1.0f + (float)i * 1e-3f;
  for (long k = 0; k < n; k++)
    for (int i = 0; i < 10; i++) a[i] = a[i] * 0.999999f + 1e-7f;
  float s = 0;
  for (int i = 0; i < 10; i++) s += a[i];
  return s;
}

static float max_scalar(const float *p, long n) {
  float m = p[0];
  for (long i = 1; i < n; i++) m = p[i] > m ? p[i] : m;
  return m;
}

static float exp_sum_scalar(const float *src, float *dst, long n, float shift) {
  float s = 0;
  for (long i = 0; i < n; i++) {
    float e = exp_scalar(src[i] - shift);
    if (dst) dst[i] = e;
    s += e;
  }
  return s;
}

static void silu_scalar(const float *x, float *y, long n) {
  for (long i = 0; i < n; i++) y[i] = x[i] / (1.0f + exp_scalar(-x[i]));
}

static void silu_backward_scalar(const float *x, const float *dy, float *dx, long n) {
  for (long i = 0; i < n; i++) {
    float s = 1.0f / (1.0f + exp_scalar(-x[i]));
    dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
  }
}

/* ---- AVX2 + FMA bodies ---------------------------------------------------------------- */

#ifdef QOPT_X86
#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline __m256 exp8(__m256 x0) {
  __m256 x1 = _mm256_min_ps(_mm256_max_ps(x0, _mm256_set1_ps(-87.33654f)), _mm256_set1_ps(88.3762626647949f));
  const __m256 magic = _mm256_set1_ps(12582912.0f);
  __m256 t = _mm256_fmadd_ps(x1, _mm256_set1_ps(1.44269504088896341f), magic);
  __m256 fx = _mm256_sub_ps(t, magic);
  __m256 x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x1);
  x = _mm256_fmadd_ps(fx, _mm256_set1_ps(2.12194440e-4f), x);
  __m256 z = _mm256_mul_ps(x, x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_add_ps(_mm256_fmadd_ps(y, z, x), _mm256_set1_ps(1.0f));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4B400000)), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

AVX2 static inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

AVX2 static inline float hmax8(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

AVX2 static float fma_chains_avx2(long n) {
  /* Distinct starting values, so no compiler can merge the chains. */
  __m256 a0 = _mm256_set1_ps(1.0f), a1 = _mm256_set1_ps(1.1f), a2 = _mm256_set1_ps(1.2f), a3 = _mm256_set1_ps(1.3f),
         a4 = _mm256_set1_ps(1.4f), a5 = _mm256_set1_ps(1.5f), a6 = _mm256_set1_ps(1.6f), a7 = _mm256_set1_ps(1.7f),
         a8 = _mm256_set1_ps(1.8f), a9 = _mm256_set1_ps(1.9f);
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (long i = 0; i < n; i++) {
    a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c);
    a2 = _mm256_fmadd_ps(a2, m, c); a3 = _mm256_fmadd_ps(a3, m, c);
    a4 = _mm256_fmadd_ps(a4, m, c); a5 = _mm256_fmadd_ps(a5, m, c);
    a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c);
    a8 = _mm256_fmadd_ps(a8, m, c); a9 = _mm256_fmadd_ps(a9, m, c);
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                           _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(_mm256_add_ps(a6, a7), _mm256_add_ps(a8, a9))));
  return hsum8(s);
}

AVX2 static float max_avx2(const float *p, long n) {
  __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
  long i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(p + i));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(p + i + 8));
  }
  float m = hmax8(_mm256_max_ps(m0, m1));
  for (; i < n; i++) m = p[i] > m ? p[i] : m;
  return m;
}

AVX2 static float exp_sum_avx2(const float *src, float *dst, long n, float shift) {
  const __m256 sh = _mm256_set1_ps(shift);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
  long i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(src + i), sh));
    __m256 e1 = exp8(_mm256_sub_ps(_mm256_loadu_ps(src + i + 8), sh));
    if (dst) {
      _mm256_storeu_ps(dst + i, e0);
      _mm256_storeu_ps(dst + i + 8, e1);
    }
    acc0 = _mm256_add_ps(acc0, e0);
    acc1 = _mm256_add_ps(acc1, e1);
  }
  float s = hsum8(_mm256_add_ps(acc0, acc1));
  for (; i < n; i++) {
    float e = exp_scalar(src[i] - shift);
    if (dst) dst[i] = e;
    s += e;
  }
  return s;
}

AVX2 static void silu_avx2(const float *x, float *y, long n) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  long i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, v)))));
  }
  for (; i < n; i++) y[i] = x[i] / (1.0f + exp_scalar(-x[i]));
}

AVX2 static void silu_backward_avx2(const float *x, const float *dy, float *dx, long n) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  long i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, v))));
    __m256 f = _mm256_fmadd_ps(v, _mm256_sub_ps(one, s), one);
    __m256 g = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(dy + i), s), f);
    _mm256_storeu_ps(dx + i, _mm256_add_ps(_mm256_loadu_ps(dx + i), g));
  }
  silu_backward_scalar(x + i, dy + i, dx + i, n - i);
}
#endif

/* ---- dispatch ------------------------------------------------------------------------- */

static int avx2_state = -1;

int qopt_kernels_avx2(void) {
  if (avx2_state < 0) {
#ifdef QOPT_X86
    __builtin_cpu_init();
    avx2_state = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    avx2_state = 0;
#endif
  }
  return avx2_state;
}

#ifdef QOPT_X86
#define DISPATCH(avx2call, scalarcall) \
  do {                                 \
    if (qopt_kernels_avx2()) return avx2call; \
    return scalarcall;                 \
  } while (0)
#else
#define DISPATCH(avx2call, scalarcall) return scalarcall
#endif

int qopt_fma_lanes(void) { return qopt_kernels_avx2() ? 8 : 1; }

float qopt_fma_chains(long iterations) { DISPATCH(fma_chains_avx2(iterations), fma_chains_scalar(iterations)); }

float qopt_max(const float *p, long n) { DISPATCH(max_avx2(p, n), max_scalar(p, n)); }

float qopt_exp_shifted_sum(const float *src, float *dst, long n, float shift) {
  DISPATCH(exp_sum_avx2(src, dst, n, shift), exp_sum_scalar(src, dst, n, shift));
}

float qopt_softmax_row_unnormalized(float *p, long valid, long n) {
  float m = qopt_max(p, valid);
  float s = qopt_exp_shifted_sum(p, p, valid, m);
  if (n > valid) memset(p + valid, 0, (size_t)(n - valid) * sizeof(float));
  return 1.0f / s;
}

#ifdef QOPT_X86
AVX2 static float dot_avx2(const float *a, const float *b, long n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
  long i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  float s = hsum8(_mm256_add_ps(acc0, acc1));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

AVX2 static void softmax_grad_avx2(const float *p, float *dp, long valid, float dot) {
  const __m256 dv = _mm256_set1_ps(dot);
  long i = 0;
  for (; i + 8 <= valid; i += 8)
    _mm256_storeu_ps(dp + i, _mm256_mul_ps(_mm256_loadu_ps(p + i), _mm256_sub_ps(_mm256_loadu_ps(dp + i), dv)));
  for (; i < valid; i++) dp[i] = p[i] * (dp[i] - dot);
}
#endif

void qopt_softmax_grad_row(const float *p, float *dp, long valid, long n) {
#ifdef QOPT_X86
  if (qopt_kernels_avx2()) {
    softmax_grad_avx2(p, dp, valid, dot_avx2(p, dp, valid));
  } else
#endif
  {
    float dot = 0;
    for (long j = 0; j < valid; j++) dot += p[j] * dp[j];
    for (long j = 0; j < valid; j++) dp[j] = p[j] * (dp[j] - dot);
  }
  if (n > valid) memset(dp + valid, 0, (size_t)(n - valid) * sizeof(float));
}

void qopt_scale(float *p, long n, float s) {
  for (long i = 0; i < n; i++) p[i] *= s;
}

void qopt_silu(const float *x, float *y, long n) {
#ifdef QOPT_X86
  if (qopt_kernels_avx2()) { silu_avx2(x, y, n); return; }
#endif
  silu_scalar(x, y, n);
}

void qopt_silu_mul(const float *g, const float *u, float *y, long n) {
  /* Blocks are multiples of 8, so qopt_silu's scalar tail covers the same elements as one call
   * over all n would. */
  float s[1024];
  for (long i = 0; i < n; i += 1024) {
    long len = n - i < 1024 ? n - i : 1024;
    qopt_silu(g + i, s, len);
    for (long j = 0; j < len; j++) y[i + j] = s[j] * u[i + j];
  }
}

void qopt_silu_backward(const float *x, const float *dy, float *dx, long n) {
#ifdef QOPT_X86
  if (qopt_kernels_avx2()) { silu_backward_avx2(x, dy, dx, n); return; }
#endif
  silu_backward_scalar(x, dy, dx, n);
}

long qopt_fetch_increment(long *counter) { return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED); }
