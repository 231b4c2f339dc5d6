#ifndef CQOPT_KERNELS_H
#define CQOPT_KERNELS_H

/* Vector kernels the Swift runtime cannot get from the compiler: Swift builds for baseline
 * x86-64 (SSE2, no FMA), so its loops run 4 lanes wide without fused multiply-add. These C
 * functions carry an AVX2+FMA body chosen at run time (CPUID) next to a portable scalar body
 * with the same arithmetic order per lane, so the binary still runs on any x86-64 or ARM host.
 *
 * exp: Cephes expf range reduction and polynomial, as FastMath.exp in Swift (≈ 2 ulp). */

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when the AVX2+FMA bodies are in use on this CPU. */
int qopt_kernels_avx2(void);

/* Runs `iterations` rounds of 10 independent fused multiply-add chains on full-width vectors
 * (no memory traffic): the core's fp32 FMA peak. Flops = iterations × 10 × 2 × lanes, with
 * `lanes` = qopt_fma_lanes(). Returns a value derived from the chains so the work is kept. */
float qopt_fma_chains(long iterations);
int qopt_fma_lanes(void);

/* max of p[0..<n], n > 0. */
float qopt_max(const float *p, long n);

/* dst[i] = exp(src[i] - shift) for i < n (dst may equal src; NULL: not stored); returns
 * the sum of the exponentials. */
float qopt_exp_shifted_sum(const float *src, float *dst, long n, float shift);

/* Causal softmax of one score row in place: p[j] = exp(p[j] - max) for j < valid, zero for
 * valid <= j < n; returns 1 / sum (the caller scales the product P·V instead of P). */
float qopt_softmax_row_unnormalized(float *p, long valid, long n);

/* Softmax backward of one probability row in place: dp[j] = p[j] (dp[j] - sum_k p[k] dp[k])
 * for j < valid (k < valid), zero for valid <= j < n. */
void qopt_softmax_grad_row(const float *p, float *dp, long valid, long n);

/* p[i] *= s. */
void qopt_scale(float *p, long n, float s);

/* y[i] = x[i] / (1 + exp(-x[i])) (y may equal x). */
void qopt_silu(const float *x, float *y, long n);

/* y[i] = silu(g[i]) * u[i]: qopt_silu then one f32 multiply per element, in L1-sized blocks
 * (the same values as the two passes, which would write and reread the silu values). */
void qopt_silu_mul(const float *g, const float *u, float *y, long n);

/* dx[i] += dy[i] * s * (1 + x (1 - s)), s = sigmoid(x[i]). */
void qopt_silu_backward(const float *x, const float *dy, float *dx, long n);

/* Atomically returns *counter and adds 1 (work sharing between threads). */
long qopt_fetch_increment(long *counter);

/* finetune's integer-quantized linears (quant_train.c), rows r0 ..< r1 of a cols-wide weight
 * whose group g of row r, column c is r * gpr + c / group (gpr 0: one scale for the tensor,
 * then rows must cover the whole tensor in one call). zero NULL: symmetric. Each group's
 * reduction adds in column order without fused multiply-add (bit-identical for any split). */

/* out[i] = s_g (codes[i] - z_g). */
void qopt_qdq_codes(const int8_t *codes, const float *scale, const float *zero, long r0, long r1,
                    long cols, long group, long gpr, float *out);

/* Straight-through quantize-dequantize of float weights w: x = round-half-even(w/s + z),
 * q = clamp(x, qmin, qmax), codes[i] = q, inside[i] = (x == q), out[i] = s (q - z). */
void qopt_qdq_ste(const float *w, const float *scale, const float *zero, float qmin, float qmax,
                  long r0, long r1, long cols, long group, long gpr, int8_t *codes,
                  uint8_t *inside, float *out);

/* Adds the gradients from dw = dL/dw-hat: where w is non-NULL and inside[i], gw[i] += dw and
 * gscale += dw (q - z - w/s); otherwise gscale += dw (q - z) and gzero -= dw s. */
void qopt_qdq_grad(const int8_t *codes, const float *scale, const float *zero, const float *w,
                   const uint8_t *inside, const float *dw, long r0, long r1, long cols, long group,
                   long gpr, float *gscale, float *gzero, float *gw);

/* One bias-corrected Adam step over n parameters: m = b1 m + (1 - b1) g,
 * v = b2 v + (1 - b2) g g, p -= lr (m / c1) / (sqrt(v / c2) + eps). */
void qopt_adam(float *p, const float *g, float *m, float *v, long n, float lr, float b1, float b2,
               float eps, float c1, float c2);

/* llama.cpp's CPU arithmetic (ggml_forward.c), bit for bit, for calibrate<numerics=llama.cpp>. */

/* y[j, i] = sum_l w[i, l] x[j, l] as llamafile's tinyBLAS (AVX2) sums it: 8 lanes of FMA over
 * l ≡ lane (mod 8), then its horizontal sum. w is m × k, x n × k, y n × m. Returns 0 (nothing
 * written) where tinyBLAS would decline: k % 8 != 0 or m % 4 != 0. */
int qopt_ggml_sgemm(const float *w, const float *x, float *y, long m, long n, long k);

/* ggml_rms_norm then ggml_mul: sum of squares in double, y = (x · (1 / sqrtf(mean + eps))) · w. */
void qopt_ggml_rms_norm(const float *x, long rows, long d, const float *w, float eps, float *y);

/* ggml_v_silu (groups of 8) and ggml_silu_f32 (the tail). */
void qopt_ggml_silu(const float *x, long n, float *y);

/* Causal attention as ggml's tiled CPU flash attention computes it (KV tiles of 64, f32 Q,
 * sequential FMA dot products, online softmax with ggml_v_expf, sums of each tile in double).
 * q: tokens × heads·d, k and v: tokens × kvHeads·d (already rounded to f16 as the KV cache
 * holds them); halfSplit: Q/K head dimensions are in HF order (i, i + d/2 rotate together),
 * and are summed in GGUF's interleaved order. d <= 256. */
void qopt_ggml_flash_attn(
  const float *q, const float *k, const float *v, long tokens, long heads, long kvHeads, long d,
  int halfSplit, float scale, float *out);

#ifdef __cplusplus
}
#endif

#endif
