/* finetune's per-weight loops over an integer-quantized linear (TrainableQuantLinear):
 * quantize-dequantize, the parameter gradients and Adam, on a range of rows so the caller can
 * split a matrix between threads. Each group's reduction runs in column order, one add at a
 * time and with no fused multiply-add, as the Swift loops these replace did, so results do not
 * depend on the thread count and match those loops bit for bit. */

#include "CQoptKernels.h"

#include <math.h>

#pragma STDC FP_CONTRACT OFF
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

/* Group g of column c in row r: r * gpr + c / group, or 0 per tensor (gpr 0). */

void qopt_qdq_codes(const int8_t *codes, const float *scale, const float *zero, long r0, long r1,
                    long cols, long group, long gpr, float *out) {
  for (long r = r0; r < r1; r++) {
    long ngroups = gpr > 0 ? gpr : 1;
    for (long gi = 0; gi < ngroups; gi++) {
      long c0 = gpr > 0 ? gi * group : 0, c1 = gpr > 0 ? c0 + group : cols;
      if (c1 > cols) c1 = cols;
      long g = gpr > 0 ? r * gpr + gi : 0;
      float s = scale[g], z = zero ? zero[g] : 0.0f;
      const int8_t *q = codes + r * cols;
      float *o = out + r * cols;
      for (long c = c0; c < c1; c++) o[c] = s * ((float)q[c] - z);
    }
  }
}

void qopt_qdq_ste(const float *w, const float *scale, const float *zero, float qmin, float qmax,
                  long r0, long r1, long cols, long group, long gpr, int8_t *codes,
                  uint8_t *inside, float *out) {
  for (long r = r0; r < r1; r++) {
    long ngroups = gpr > 0 ? gpr : 1;
    for (long gi = 0; gi < ngroups; gi++) {
      long c0 = gpr > 0 ? gi * group : 0, c1 = gpr > 0 ? c0 + group : cols;
      if (c1 > cols) c1 = cols;
      long g = gpr > 0 ? r * gpr + gi : 0;
      float s = scale[g], z = zero ? zero[g] : 0.0f;
      for (long c = c0; c < c1; c++) {
        long i = r * cols + c;
        float x = nearbyintf(w[i] / s + z);
        float q = fminf(fmaxf(x, qmin), qmax);
        inside[i] = x == q;
        codes[i] = (int8_t)q;
        out[i] = s * (q - z);
      }
    }
  }
}

void qopt_qdq_grad(const int8_t *codes, const float *scale, const float *zero, const float *w,
                   const uint8_t *inside, const float *dw, long r0, long r1, long cols, long group,
                   long gpr, float *gscale, float *gzero, float *gw) {
  for (long r = r0; r < r1; r++) {
    long ngroups = gpr > 0 ? gpr : 1;
    for (long gi = 0; gi < ngroups; gi++) {
      long c0 = gpr > 0 ? gi * group : 0, c1 = gpr > 0 ? c0 + group : cols;
      if (c1 > cols) c1 = cols;
      long g = gpr > 0 ? r * gpr + gi : 0;
      float s = scale[g], z = zero ? zero[g] : 0.0f;
      float gs = gscale[g], gz = zero ? gzero[g] : 0.0f;
      for (long c = c0; c < c1; c++) {
        long i = r * cols + c;
        float q = (float)codes[i], d = dw[i];
        if (w && inside[i]) {
          gw[i] += d;
          gs += d * (q - z - w[i] / s);
        } else {
          gs += d * (q - z);
          if (zero) gz -= d * s;
        }
      }
      gscale[g] = gs;
      if (zero) gzero[g] = gz;
    }
  }
}

void qopt_adam(float *p, const float *g, float *m, float *v, long n, float lr, float b1, float b2,
               float eps, float c1, float c2) {
  float a1 = 1 - b1, a2 = 1 - b2;
  for (long i = 0; i < n; i++) {
    float mi = b1 * m[i] + a1 * g[i];
    float vi = b2 * v[i] + a2 * g[i] * g[i];
    m[i] = mi;
    v[i] = vi;
    p[i] -= lr * (mi / c1) / (sqrtf(vi / c2) + eps);
  }
}
