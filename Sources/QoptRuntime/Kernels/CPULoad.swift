#if canImport(Glibc)
  import Glibc
#endif

/// How busy the CPUs this process may run on are with *other* processes, and how many threads
/// the matrix work should use because of it.
///
/// Why: OpenBLAS splits each product evenly across its threads, and a thread that finishes its
/// share waits for the others by spinning on `sched_yield`. When another process holds a core,
/// every product waits for the thread that lost its core and the waiting is spent in system
/// calls: on a 2-core machine busy with two compilers, 2 threads ran the tiny demo pipeline in
/// 87 s against 20 s with 1. A second thread only pays on a core that is actually free.
///
/// The measure is the CPU time of the allowed CPUs (`/proc/stat`) minus this process's own
/// (`getrusage`) over a window, so it holds while qopt itself keeps the cores busy. The pure
/// functions below take the counters as arguments and are what the tests check.
public enum CPULoad {
  /// One reading of the counters.
  public struct Sample: Sendable, Equatable {
    /// Busy clock ticks (user, nice, system, irq, softirq, steal) summed over the allowed CPUs.
    public var busyTicks: Int
    /// CPU seconds this process has used (all threads, user + system).
    public var ownSeconds: Double
    /// Monotonic seconds when it was read.
    public var time: Double

    public init(busyTicks: Int, ownSeconds: Double, time: Double) {
      self.busyTicks = busyTicks
      self.ownSeconds = ownSeconds
      self.time = time
    }
  }

  /// Threads for `cpus` CPUs of which `othersBusy` cores' worth are used by other processes,
  /// at most `limit`, at least 1.
  ///
  /// A CPU counts as free when less than half of it is taken. This also converges when qopt's
  /// own threads depress what others get: one busy neighbour next to 2 qopt threads on 2 cores
  /// measures 0.67 (→ 1 thread), and next to 1 thread it measures 1.0 (→ 1 thread).
  public static func threads(cpus: Int, othersBusy: Double, limit: Int) -> Int {
    let free = Double(cpus) - max(0, othersBusy)
    return max(1, min(limit, cpus, Int((free + 0.5).rounded(.down))))
  }

  /// Cores' worth of CPU time other processes used between `a` and `b` (never negative);
  /// nil when the window is empty.
  public static func othersBusy(from a: Sample, to b: Sample, ticksPerSecond: Double) -> Double? {
    let dt = b.time - a.time
    guard dt > 0, ticksPerSecond > 0 else { return nil }
    let busy = Double(b.busyTicks - a.busyTicks) / ticksPerSecond
    return max(0, (busy - (b.ownSeconds - a.ownSeconds)) / dt)
  }

  /// Busy ticks summed over the `cpuN` lines of `/proc/stat` text whose N is in `cpus` (every
  /// `cpuN` line when nil); nil when there is no such line.
  public static func busyTicks(procStat text: String, cpus: Set<Int>?) -> Int? {
    var total = 0
    var found = false
    for line in text.split(separator: "\n") where line.hasPrefix("cpu") {
      let fields = line.split(separator: " ")
      guard let cpu = Int(fields[0].dropFirst(3)), cpus?.contains(cpu) ?? true else { continue }  // "cpu" alone: the sum
      let v = fields.dropFirst().map { Int($0) ?? 0 }
      guard v.count >= 4 else { continue }
      // user nice system idle iowait irq softirq steal: all but idle and iowait.
      total += v.enumerated().prefix(8).reduce(0) {
        $0 + ($1.offset == 3 || $1.offset == 4 ? 0 : $1.element)
      }
      found = true
    }
    return found ? total : nil
  }

  /// Runnable tasks other than the reader, from `/proc/loadavg` text ("0.46 1.35 0.95 3/91 11807":
  /// the fourth field counts the tasks running now, the reader included).
  public static func runnableOthers(loadavg text: String) -> Int? {
    let fields = text.split(separator: " ")
    guard fields.count >= 4,
      let running = fields[3].split(separator: "/").first.flatMap({ Int($0) })
    else { return nil }
    return max(0, running - 1)
  }

  // MARK: - Reading the counters

  /// The CPUs this process may run on (its affinity mask, `Cpus_allowed_list` of
  /// /proc/self/status), or nil where that is unavailable.
  public static func allowedCPUs() -> Set<Int>? {
    guard let status = readProc("/proc/self/status") else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix("Cpus_allowed_list:") {
      return cpuList(String(line.dropFirst("Cpus_allowed_list:".count)))
    }
    return nil
  }

  /// A kernel CPU list ("0-3,8,10-11") as a set; nil when malformed or empty.
  public static func cpuList(_ text: String) -> Set<Int>? {
    var cpus = Set<Int>()
    for part in text.split(separator: ",") {
      let bounds = part.split(separator: "-", omittingEmptySubsequences: false).map {
        Int($0.filter { !$0.isWhitespace })
      }
      guard let lo = bounds.first ?? nil, bounds.count <= 2,
        let hi = bounds.count == 2 ? bounds[1] : lo, lo >= 0, hi >= lo, hi - lo < 65536
      else {
        return nil
      }
      cpus.formUnion(lo...hi)
    }
    return cpus.isEmpty ? nil : cpus
  }

  /// How many CPUs this process may run on: the default `-threads`.
  public static var allowedCPUCount: Int {
    allowedCPUs()?.count ?? max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
  }

  /// Reads the counters now; nil where `/proc/stat` cannot be read.
  public static func sample(cpus: Set<Int>?) -> Sample? {
    guard let text = readProc("/proc/stat"), let busy = busyTicks(procStat: text, cpus: cpus) else {
      return nil
    }
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    let own =
      Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(
        u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6
    return Sample(busyTicks: busy, ownSeconds: own, time: monotonicSeconds())
  }

  /// Runnable tasks other than this one right now, capped at the CPU count (a first guess
  /// before any window has been measured).
  public static func runnableOthersNow() -> Int? {
    readProc("/proc/loadavg").flatMap { runnableOthers(loadavg: $0) }
  }

  /// Clock ticks per second of `/proc/stat`.
  public static var ticksPerSecond: Double { Double(max(1, sysconf(Int32(_SC_CLK_TCK)))) }

  /// A small text file from /proc (their size is not known before reading).
  static func readProc(_ path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 8192)
    while true {
      let n = read(fd, &buf, buf.count)
      if n <= 0 { break }
      bytes += buf[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
  }
}
