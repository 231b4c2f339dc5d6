import COpenBLAS

/// The LAPACK routines qopt uses (OpenBLAS's own, f64): the Cholesky factorizations GPTQ needs.
public enum LAPACK {
  /// The upper Cholesky factor `U` of `H⁻¹` (`H⁻¹ = Uᵀ U`) for a symmetric positive definite
  /// `H` (`n × n`, row-major, f64), written row-major into `out` with zeros below the diagonal:
  /// `chol(H)`, then the inverse from that factor (`dpotri`), then `chol` of the inverse — what
  /// torch's `cholesky`, `cholesky_inverse`, `cholesky(upper=True)` give GPTQ. Nil when `H` is
  /// not positive definite.
  ///
  /// Complexity: three O(n³/3) LAPACK calls; memory: one `n × n` f64 copy.
  public static func inverseCholeskyUpper(_ h: [Double], n: Int) -> [Double]? {
    precondition(h.count == n * n, "square matrix")
    guard n > 0 else { return [] }
    BLAS.prepare()
    // Column-major view of a symmetric matrix is the same matrix: factor its lower triangle.
    var a = h
    var dim = blasint(n), lda = blasint(n), info: blasint = 0
    var lower = Int8(UInt8(ascii: "L")), upper = Int8(UInt8(ascii: "U"))
    dpotrf_(&lower, &dim, &a, &lda, &info)
    guard info == 0 else { return nil }
    dpotri_(&lower, &dim, &a, &lda, &info)
    guard info == 0 else { return nil }
    // dpotri leaves the inverse in the lower triangle (column-major): mirror it.
    for j in 0..<n {
      for i in (j + 1)..<n { a[j + i * n] = a[i + j * n] }
    }
    dpotrf_(&upper, &dim, &a, &lda, &info)
    guard info == 0 else { return nil }
    // Column-major U(i, j), i ≤ j, sits at a[i + j·n]; write it row-major.
    var out = [Double](repeating: 0, count: n * n)
    for i in 0..<n {
      for j in i..<n { out[i * n + j] = a[i + j * n] }
    }
    return out
  }
}
