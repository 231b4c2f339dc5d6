import CQoptKernels

/// llama.cpp's CPU arithmetic (ggml 0.25 with AVX2/FMA), bit for bit, for the forward of
/// `calibrate<numerics=llama.cpp>` (`qopt imatrix`): with these five kernels a SmolLM2 block
/// gives the bits llama-imatrix's graph gives, measured op by op against tensors dumped from
/// llama.cpp (`scripts/dump-ggml-tensors`). The bodies are C (CQoptKernels/ggml_forward.c);
/// they differ from `Kernels`' in summation order only, which is what moves the last bits.
extension Kernels {
  /// tinyBLAS's `y = x · wᵀ` (8 FMA lanes over the inner dimension, then its horizontal sum),
  /// the product ggml's `MUL_MAT` takes for f32 weights; `false` (nothing written) where
  /// tinyBLAS would decline (inner size not a multiple of 8, outputs not of 4).
  public static func ggmlLinear(
    _ x: UnsafePointer<Float>, rows: Int, inFeatures: Int, weight w: UnsafePointer<Float>,
    outFeatures: Int, into y: UnsafeMutablePointer<Float>
  ) -> Bool {
    qopt_ggml_sgemm(w, x, y, outFeatures, rows, inFeatures) != 0
  }

  /// `ggml_rms_norm` then `ggml_mul`: the sum of squares in double, `(x · scale) · w`.
  public static func ggmlRMSNorm(
    _ x: UnsafePointer<Float>, rows: Int, columns: Int, weight: UnsafePointer<Float>, eps: Float,
    into y: UnsafeMutablePointer<Float>
  ) {
    qopt_ggml_rms_norm(x, rows, columns, weight, eps, y)
  }

  /// `ggml_v_silu` in groups of 8 (ggml's own exp), libm's `expf` for the tail.
  public static func ggmlSilu(
    _ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>
  ) {
    qopt_ggml_silu(x, count, y)
  }

  /// ggml's RoPE rotation, which GCC contracts into fused multiply-adds:
  /// `y₀ = fma(x₀, cos, −x₁ sin)`, `y₁ = fma(x₀, sin, x₁ cos)`. Same layout as `rope`.
  public static func ggmlRope(
    _ x: UnsafePointer<Float>, rows t: Int, heads: Int, table: RopeTable,
    into y: UnsafeMutablePointer<Float>, headStride d: Int
  ) {
    let half = table.headDim / 2
    if d > table.headDim {
      for p in 0..<t {
        for h in 0..<heads {
          let o = p * heads * d + h * d + table.headDim
          (y + o).update(from: x + o, count: d - table.headDim)
        }
      }
    }
    for p in 0..<t {
      for h in 0..<heads {
        let xi = x + p * heads * d + h * d, yi = y + p * heads * d + h * d
        for i in 0..<half {
          let a = xi[i], b = xi[i + half]
          let c = table.cos[p * half + i], s = table.sin[p * half + i]
          yi[i] = (-(b * s)).addingProduct(a, c)
          yi[i + half] = (b * c).addingProduct(a, s)
        }
      }
    }
  }

  /// Causal attention of one sequence as ggml's tiled CPU flash attention computes it (f32
  /// queries, keys and values as given, i.e. already rounded to f16 as the KV cache holds
  /// them). `interleavedQK`: llama.cpp holds this model's Q/K head dimensions in adjacent
  /// pairs (its llama architecture; the IR has HF's halves), so its dot products add the
  /// dimensions in that order. Scale 1/√d as llama.cpp's `kq_scale`.
  public static func ggmlAttention(
    q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, tokens: Int,
    heads: Int, kvHeads: Int, headDim d: Int, interleavedQK: Bool,
    into out: UnsafeMutablePointer<Float>
  ) {
    qopt_ggml_flash_attn(
      q, k, v, tokens, heads, kvHeads, d, interleavedQK ? 1 : 0, 1 / Float(d).squareRoot(), out)
  }
}
