import COpenBLAS

#if canImport(Glibc)
  import Glibc
#endif

/// The only place qopt calls OpenBLAS.
public enum BLAS {
  /// Sets the OpenBLAS thread count explicitly (never left to the environment's default).
  public static func setThreads(_ n: Int) {
    openblas_set_num_threads(Int32(max(1, n)))
  }

  public static var threads: Int { Int(openblas_get_num_threads()) }

  /// Stops OpenBLAS's worker threads until the next threaded call starts them again.
  ///
  /// Why: OpenBLAS starts its workers when the library loads, and an idle worker spins on
  /// `sched_yield` for a while before it sleeps. On a two-core machine that spin takes a core
  /// from a command that never multiplies a matrix (an import and emit: ~20 % of its CPU).
  /// The symbol is OpenBLAS's own (its fork handler uses it; not in cblas.h), looked up at run
  /// time so a BLAS built without a thread server still links and simply skips this.
  public static func stopIdleThreads() {
    typealias Shutdown = @convention(c) () -> Int32
    guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "blas_thread_shutdown_") else { return }  // RTLD_DEFAULT
    _ = unsafeBitCast(sym, to: Shutdown.self)()
  }

  /// Row-major `C[M, N] = alpha · op(A) · op(B) + beta · C` with leading dimensions given
  /// explicitly, so strided head views need no copies. `transB` reads B as `[N, K]`.
  @inline(__always)
  public static func sgemm(
    transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    guard m > 0, n > 0 else { return }
    cblas_sgemm(
      CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans, blasint(m), blasint(n), blasint(k),
      alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
  }
}
