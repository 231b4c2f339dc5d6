import COpenBLAS
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The only place qopt calls OpenBLAS.
public enum BLAS {
  /// The count qopt asked for (0: none yet) and whether OpenBLAS has been told it.
  private struct Count {
    var wanted = 0
    var told = false
  }
  private static let count = Mutex(Count())
  /// Set once the first product has told OpenBLAS the count: from then on `setThreads` goes
  /// straight through (the hot path reads only this flag).
  private static let started = Atomic<Bool>(false)

  /// Sets the OpenBLAS thread count explicitly (never left to the environment's default).
  ///
  /// Before the first product the count is only recorded: telling OpenBLAS starts its worker
  /// threads (`openblas_set_num_threads` restarts the pool that `stopIdleThreads` stopped), and
  /// an idle worker spins on `sched_yield` for about 0.1 s. A command that never multiplies a
  /// matrix (an import, rtn and emit) would lose a core to that spin for most of its run.
  public static func setThreads(_ n: Int) {
    let n = max(1, n)
    count.withLock { c in
      c.wanted = n
      if c.told { openblas_set_num_threads(Int32(n)) }
    }
  }

  public static var threads: Int {
    let wanted = count.withLock { $0.wanted }
    return wanted > 0 ? wanted : Int(openblas_get_num_threads())
  }

  /// Tells OpenBLAS the recorded count before its first product; every OpenBLAS call goes
  /// through here first.
  @inline(__always)
  static func prepare() {
    if !started.load(ordering: .acquiring) { startSlow() }
  }

  private static func startSlow() {
    count.withLock { c in
      if !c.told {
        if c.wanted > 0 { openblas_set_num_threads(Int32(c.wanted)) }
        c.told = true
      }
    }
    started.store(true, ordering: .releasing)
  }

  /// Stops OpenBLAS's worker threads until the next threaded call starts them again.
  ///
  /// Why: OpenBLAS starts its workers when the library loads, and an idle worker spins on
  /// `sched_yield` for a while before it sleeps. On a two-core machine that spin takes a core
  /// from a command that never multiplies a matrix (an import and emit: ~20 % of its CPU).
  /// The symbol is OpenBLAS's own (its fork handler uses it; not in cblas.h), looked up at run
  /// time so a BLAS built without a thread server still links and simply skips this.
  ///
  /// Only where no other thread can be inside an OpenBLAS call: OpenBLAS's shutdown joins its
  /// workers and races a product that another thread is starting (stopping the worker before
  /// each attention of the eval, with tests running products side by side, left the shutdown
  /// waiting forever on a worker that had gone to sleep).
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
    prepare()
    cblas_sgemm(
      CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans, blasint(m), blasint(n), blasint(k),
      alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
  }
}
