extension Kernels {
  /// `y[T, N] = x[T, K] · w[N, K]ᵀ (+ b[N])`: one sgemm over all T rows.
  ///
  /// O(T·N·K) flops; no memory beyond `y`.
  public static func linear(
    _ x: UnsafePointer<Float>, rows t: Int, inFeatures k: Int, weight w: UnsafePointer<Float>,
    outFeatures n: Int, bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>
  ) {
    BLAS.sgemm(transB: true, m: t, n: n, k: k, a: x, lda: k, b: w, ldb: k, c: y, ldc: n)
    if let bias {
      for r in 0..<t {
        let row = y + r * n
        for j in 0..<n { row[j] += bias[j] }
      }
    }
  }
}

/// Forward kernels: pure functions of explicit, shape-annotated buffers. Each reads its inputs
/// and writes only its output, so a reverse-mode twin can sit beside it.
public enum Kernels {}
