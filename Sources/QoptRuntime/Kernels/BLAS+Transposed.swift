import COpenBLAS

extension BLAS {
  /// Row-major `C[M, N] = alpha · Aᵀ · B + beta · C` with `A` stored as `[K, M]` and `B` as
  /// `[K, N]`: the weight gradient `dW = dYᵀ · X` of a linear, one call over all rows.
  @inline(__always)
  public static func sgemmTransA(
    m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    guard m > 0, n > 0 else { return }
    prepare()
    cblas_sgemm(
      CblasRowMajor, CblasTrans, CblasNoTrans, blasint(m), blasint(n), blasint(k),
      alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
  }
}

extension BLAS {
  /// `C[N, N] += alpha · Aᵀ · A` (upper triangle only) with `A` row-major `[K, N]`: a Gram
  /// matrix `XᵀX` of `K` input rows in half the flops of `sgemm`. Symmetrize before reading
  /// the lower triangle.
  @inline(__always)
  public static func ssyrkTransA(
    n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, beta: Float = 1,
    c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    guard n > 0, k > 0 else { return }
    prepare()
    cblas_ssyrk(
      CblasRowMajor, CblasUpper, CblasTrans, blasint(n), blasint(k), alpha, a, blasint(lda), beta,
      c, blasint(ldc))
  }
}
