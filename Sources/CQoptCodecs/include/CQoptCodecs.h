#ifndef CQOPT_CODECS_H
#define CQOPT_CODECS_H

#include <stddef.h>
#include <stdint.h>

/// llama.cpp's block encoders (Q8_0, Q4_0, Q4_1), bit-identical to the gguf package's numpy
/// quantizer: `nblocks` blocks of 32 floats from `x` into `out` (34, 18 or 20 bytes a block).
/// AVX2 bodies are chosen at run time on CPUs that have AVX2; the portable bodies compute the
/// same bits (the tests compare both against the scalar definitions).
void qopt_encode_q8_0(const float *x, size_t nblocks, uint8_t *out);
void qopt_encode_q4_0(const float *x, size_t nblocks, uint8_t *out);
void qopt_encode_q4_1(const float *x, size_t nblocks, uint8_t *out);

/// The portable bodies alone (kind 0: Q8_0, 1: Q4_0, 2: Q4_1), for tests that compare them
/// with the AVX2 ones.
void qopt_encode_portable(int kind, const float *x, size_t nblocks, uint8_t *out);

/// Decoders: `nblocks` blocks from `src` into 32 floats each (`d·q`, `d·(q − 8)`, `d·q + m`,
/// multiply then add, as gguf-py computes them in f32).
void qopt_decode_q8_0(const uint8_t *src, size_t nblocks, float *y);
void qopt_decode_q4(const uint8_t *src, size_t nblocks, float *y, int has_min);

/// Integer round-to-nearest inner loops (IntQuantizer). `portable` nonzero forces the portable
/// body (tests compare it with the AVX2 one).
/// min(min(w), 0) and max(max(w), 0).
void qopt_int_range(const float *w, size_t n, float *lo, float *hi, int portable);
/// q[i] = low byte of round_half_even(clamp(w[i] / s + plus, lo, hi)) — compressed-tensors'
/// order: the zero point added, then clamp, then round. `wmax` is max |w[i]| (what
/// qopt_int_range gives: max(−lo, hi)); a NaN weight takes the lower clamp bound.
void qopt_int_round_clamp_before(const float *w, size_t n, float s, float plus, float lo, float hi, float wmax, int8_t *q, int portable);
/// q[i] = low byte of clamp(round_half_even(w[i] / s) + plus, lo, hi) — auto-round's order.
void qopt_int_round_clamp_after(const float *w, size_t n, float s, float plus, float lo, float hi, float wmax, int8_t *q, int portable);
/// One row of `cols` weights in groups of `group` (the last may be shorter), quantized as
/// IntQuantizer's symmetric full-range rule does group by group (auto-round's
/// quant_tensor_rtn_sym): codes into `q`, each group's scale — rounded to the scale dtype
/// (`scale_type` 0: f32, 1: f16, 2: bf16), held at ±`thresh` — into `scales`. One call a row
/// instead of three a group from Swift.
void qopt_int_rtn_sym_row(const float *w, size_t cols, size_t group, int bits, int scale_type, float thresh, int8_t *q, float *scales, int portable);

/// f32 → bf16 bits (little-endian host order), round to nearest even, NaN quieted: QoptIR's
/// `floatToBF16` for `n` elements. `portable` nonzero forces the portable body.
void qopt_f32_to_bf16(const float *x, size_t n, uint16_t *out, int portable);

/// compressed-tensors' int4 packing: `n` (even) signed 4-bit codes, each plus 8, two to a byte,
/// the even-indexed one in the low nibble — eight to a little-endian int32 word, as
/// `pack_to_int32` lays them out. `portable` nonzero forces the portable body.
void qopt_pack_int4(const int8_t *codes, size_t n, uint8_t *out, int portable);
/// Its inverse for codes in [−8, 7]: `n` (even) codes from n / 2 bytes, each nibble minus 8.
void qopt_unpack_int4(const uint8_t *packed, size_t n, int8_t *codes, int portable);

/// llama.cpp's ggml codecs (kquants.c, ggml-quants.c ported verbatim), bit-identical with
/// `ggml_quantize_chunk` and ggml's `to_float`. Type ids are ggml's (`enum ggml_type`).
enum {
  QOPT_GGML_Q4_0 = 2, QOPT_GGML_Q4_1 = 3, QOPT_GGML_Q5_0 = 6, QOPT_GGML_Q5_1 = 7, QOPT_GGML_Q8_0 = 8,
  QOPT_GGML_Q2_K = 10, QOPT_GGML_Q3_K = 11, QOPT_GGML_Q4_K = 12, QOPT_GGML_Q5_K = 13, QOPT_GGML_Q6_K = 14,
  QOPT_GGML_IQ4_NL = 20, QOPT_GGML_IQ4_XS = 23,
};
/// Bytes of one row of `n_per_row` elements; 0 when the type is not one of the above or the
/// row is not a whole number of its blocks (256 for the K-quants and IQ4_XS, 32 otherwise).
size_t qopt_ggml_row_size(int type, int64_t n_per_row);
/// Always 0 for the types above (ggml's IQ1/IQ2 types would need an importance matrix).
int qopt_ggml_requires_imatrix(int type);
/// `ggml_quantize_chunk(type, src, dst, 0, nrow, n_per_row, imatrix)`: `nrow` rows into `dst`
/// (nrow × row size bytes). `imatrix` is NULL or `n_per_row` importance weights (what
/// llama-quantize passes from an imatrix: per column, mean of x² over tokens); the types that
/// ignore it (Q8_0) do so as ggml does. Returns the bytes written, 0 for an unknown type or a
/// row length that is not a multiple of the block.
size_t qopt_ggml_quantize(int type, const float *src, void *dst, int64_t nrow, int64_t n_per_row, const float *imatrix);
/// With `on`, the eight-sub-block K-quant searches use their baseline (non-AVX2) copy even where
/// the CPU has AVX2; with 0, the CPU decides again. For tests: both copies give the same bytes.
void qopt_ggml_force_baseline_searches(int on);
/// ggml's `to_float` of `nrow` rows; 0 on success, -1 for an unknown type or a bad row length.
int qopt_ggml_dequantize(int type, const void *src, float *dst, int64_t nrow, int64_t n_per_row);

#endif
