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

  /// Called once at the start of a process, before any other thread exists: stops OpenBLAS's
  /// workers (see `stopIdleThreads`) and makes the workers it starts later sleep as soon as a
  /// product is done instead of spinning.
  ///
  /// Why: an idle OpenBLAS worker spins on `sched_yield` for 2²⁸ TSC ticks (about 0.1 s) after
  /// each product before it sleeps. Between two products qopt runs its own parallel work on the
  /// same cores (attention, SwiGLU, norms), and the spinning worker takes a core from it: with
  /// the spin, the eval's attention took 0.89–1.19 s of an 8-window eval, without it 0.64–0.69 s
  /// (`qopt-bench eval`, docs/performance.md). Waking a sleeping worker costs a futex wake per
  /// threaded product, a few microseconds against products of a millisecond or more.
  /// Stopping the worker around each attention instead would race products other threads start
  /// (see `stopIdleThreads`); the timeout is OpenBLAS's own setting and needs no gate.
  ///
  /// OpenBLAS reads its settings from the environment when it loads, and the timeout again when
  /// it starts its workers: this sets `OPENBLAS_THREAD_TIMEOUT` (the minimum, 2⁴ ticks) unless
  /// the user set it, has OpenBLAS read the environment again (`openblas_read_env`, looked up
  /// at run time like the shutdown), and restores the environment. A user's own setting wins.
  public static func startQuietly() {
    stopIdleThreads()
    let name = "OPENBLAS_THREAD_TIMEOUT"
    guard getenv(name) == nil else { return }
    typealias ReadEnv = @convention(c) () -> Void
    let rtldDefault = UnsafeMutableRawPointer(bitPattern: 0)
    guard let sym = dlsym(rtldDefault, "openblas_read_env") else { return }
    setenv(name, "4", 1)
    unsafeBitCast(sym, to: ReadEnv.self)()
    unsetenv(name)
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
