import Synchronization

/// How many threads the matrix work uses: exactly `-threads N` when given, otherwise as many as
/// the allowed CPUs other processes leave free, re-measured as the run goes (`adapt()` at the
/// boundaries of the long loops: eval windows, calibration batches, autoround iterations).
///
/// Why re-measure: a run of an hour outlives the load it started under (a compiler starts or
/// stops next to it), and one measure at start would be a guess made once. Why it is safe to
/// change mid-run: OpenBLAS splits a product's rows and columns between threads, never its sums,
/// and qopt's own parallel loops write disjoint rows, so results do not depend on the count
/// (an autoround checkpoint written with 2 threads resumes bit-identically with 1).
extension BLAS {
  private struct Following {
    var limit: Int
    var cpus: Set<Int>?
    var cpuCount: Int
    var last: CPULoad.Sample?
    var current: Int
    /// Since `followFreeCores`: seconds at each count (for `meanFollowedThreads`).
    var since: Double
    var threadSeconds = 0.0
    var seconds = 0.0

    /// Accounts the time at the current count up to `now`.
    mutating func account(_ now: Double) {
      threadSeconds += Double(current) * (now - since)
      seconds += now - since
      since = now
    }
  }
  private static let following = Mutex<Following?>(nil)

  /// Seconds between two measures: long enough for `/proc/stat`'s 100 Hz ticks to average
  /// (about 50 ticks on 2 CPUs), short enough that a slow first guess costs little.
  static let adaptWindow = 0.25

  /// The default (no `-threads`): up to `limit` threads, as many as the allowed CPUs that other
  /// processes leave free. The first guess counts the tasks running right now; `adapt()`
  /// replaces it with a measure once a window has passed.
  public static func followFreeCores(limit: Int) {
    let cpus = CPULoad.allowedCPUs()
    let count = cpus?.count ?? CPULoad.allowedCPUCount
    let others = min(count, CPULoad.runnableOthersNow() ?? 0)
    let n = CPULoad.threads(cpus: count, othersBusy: Double(others), limit: limit)
    following.withLock {
      $0 = Following(
        limit: limit, cpus: cpus, cpuCount: count, last: CPULoad.sample(cpus: cpus), current: n,
        since: monotonicSeconds())
    }
    setThreads(n)
  }

  /// `-threads N`: exactly `n` threads from now on; `adapt()` leaves them alone.
  public static func fixThreads(_ n: Int) {
    following.withLock { $0 = nil }
    setThreads(n)
  }

  /// What a pass asks for (its context's thread count): exactly `n` with a fixed count; when
  /// following free cores, `n` becomes the limit and the count stays the measured one.
  public static func useThreads(_ n: Int) {
    let count: Int = following.withLock { f in
      guard var s = f else { return n }
      s.limit = max(1, n)
      s.account(monotonicSeconds())
      s.current = min(s.current, s.limit)
      f = s
      return s.current
    }
    setThreads(count)
  }

  /// The count chosen when following free cores (no `-threads`), nil with a fixed count.
  public static var followedThreads: Int? { following.withLock { $0?.current } }

  /// The time-weighted mean count since `followFreeCores` (what a benchmark reports), nil with
  /// a fixed count.
  public static var meanFollowedThreads: Double? {
    following.withLock { f in
      guard var s = f else { return nil }
      s.account(monotonicSeconds())
      f = s
      return s.seconds > 0 ? s.threadSeconds / s.seconds : Double(s.current)
    }
  }

  /// Re-measures the load when a window has passed since the last measure and changes the
  /// thread count if the free cores changed. Cheap otherwise (one clock read); call it between
  /// units of work on the thread that drives them, never inside a parallel section.
  public static func adapt() {
    let change: (old: Int, new: Int)? = following.withLock { f in
      guard var s = f else { return nil }
      let now = monotonicSeconds()
      if let last = s.last, now - last.time < adaptWindow { return nil }
      guard let sample = CPULoad.sample(cpus: s.cpus) else { return nil }
      let old = s.current
      s.account(now)
      if let last = s.last,
        let others = CPULoad.othersBusy(
          from: last, to: sample, ticksPerSecond: CPULoad.ticksPerSecond)
      {
        s.current = CPULoad.threads(cpus: s.cpuCount, othersBusy: others, limit: s.limit)
      }
      s.last = sample
      f = s
      return old == s.current ? nil : (old, s.current)
    }
    guard let change else { return }
    setThreads(change.new)
  }
}
