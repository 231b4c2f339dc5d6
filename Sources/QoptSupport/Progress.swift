import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Progress of the long phases (calibration forward, autoround blocks, eval, import, emit) on
/// standard error.
///
/// On a terminal a phase shows one line rewritten in place (steps done, detail, ETA); otherwise
/// (a log file, a pipe, a lit test) nothing is written while a phase runs and each phase ends
/// in at most one line, so logs stay short. `-quiet` silences all of it.
public final class Progress: Sendable {
  public enum Style: Sendable {
    case quiet
    /// One line per finished phase (stderr is not a terminal).
    case lines
    /// A rewritten status line while a phase runs, then its closing line.
    case terminal
  }

  /// The process-wide reporter the CLI configures.
  public static let shared = Progress()

  private struct State {
    var style: Style = isatty(2) == 1 ? .terminal : .lines
    var statusShown = false
    var lastStatus = 0.0
    var transfer: Transfer?
  }

  /// A phase counted in bytes that lower layers (file writers, importers) advance without
  /// knowing who started it: the command wraps an import or an emit in `transfer`, the code
  /// that reads or writes the bytes calls `expect` and `advance`.
  private struct Transfer {
    let name: String
    let start: Double
    var total = 0
    var done = 0
  }
  private let state = Mutex(State())
  private let sink: @Sendable (String) -> Void

  public init() { sink = Progress.write }

  /// A reporter with a given style that hands its text to `sink` instead of standard error
  /// (tests).
  public init(style: Style, sink: @escaping @Sendable (String) -> Void) {
    self.sink = sink
    state.withLock { $0.style = style }
  }

  public var style: Style {
    get { state.withLock { $0.style } }
    set { state.withLock { $0.style = newValue } }
  }

  /// A closing line (printed unless quiet; on a terminal it replaces the status line).
  public func line(_ text: String) {
    state.withLock { s in
      guard s.style != .quiet else { return }
      let clear = s.statusShown ? "\r\u{1b}[K" : ""
      s.statusShown = false
      sink(clear + (text.hasSuffix("\n") ? text : text + "\n"))
    }
  }

  /// Clears the status line (a phase whose closing line is printed elsewhere).
  public func clearStatus() {
    state.withLock { s in
      if s.statusShown { sink("\r\u{1b}[K") }
      s.statusShown = false
    }
  }

  /// A transient status line: terminal only, at most ten updates a second.
  public func status(_ text: String) {
    state.withLock { s in
      guard s.style == .terminal else { return }
      let t = Self.seconds()
      guard t - s.lastStatus >= 0.1 else { return }
      s.lastStatus = t
      s.statusShown = true
      sink("\r\u{1b}[K" + text)
    }
  }

  /// Runs `body` as a phase counted in bytes: on a terminal a status line shows the bytes
  /// `advance`d of those `expect`ed, with ETA; when it returns, `closing(seconds, bytes)` is
  /// the phase's one line (none when it returns nil). Phases do not nest: an inner one runs
  /// inside the outer's count.
  public func transfer<T>(_ name: String, _ body: () throws -> T, closing: (Double, Int) -> String?) throws -> T {
    let outer = state.withLock { s -> Bool in
      guard s.transfer == nil else { return true }
      s.transfer = Transfer(name: name, start: Self.seconds())
      return false
    }
    if outer { return try body() }
    let result: T
    do {
      result = try body()
    } catch {
      state.withLock { $0.transfer = nil }
      clearStatus()
      throw error
    }
    let (started, bytes) = state.withLock { s -> (Double, Int) in
      defer { s.transfer = nil }
      return (s.transfer?.start ?? Self.seconds(), s.transfer?.done ?? 0)
    }
    if let text = closing(Self.seconds() - started, bytes) { line(text) } else { clearStatus() }
    return result
  }

  /// Bytes the running transfer phase will process (added to what it expects already); a
  /// no-op outside one.
  public func expect(bytes: Int) {
    state.withLock { s in s.transfer?.total += bytes }
  }

  /// Bytes the running transfer phase has processed; a no-op outside one.
  public func advance(bytes: Int) {
    let shown: String? = state.withLock { s in
      guard var t = s.transfer else { return nil }
      t.done += bytes
      s.transfer = t
      guard s.style == .terminal, t.total > 0 else { return nil }
      let elapsed = Self.seconds() - t.start
      let left = t.done > 0 ? elapsed / Double(t.done) * Double(max(0, t.total - t.done)) : .nan
      let pct = Int(Double(t.done) / Double(t.total) * 100)
      return "\(t.name) \(Self.mebibytes(t.done))/\(Self.mebibytes(t.total)) MiB (\(pct)%)  \(Self.duration(elapsed)) elapsed, ETA \(Self.duration(left))"
    }
    if let shown { status(shown) }
  }

  /// `12.3` for 12.3 MiB.
  public static func mebibytes(_ bytes: Int) -> String {
    let tenths = Int((Double(bytes) / 1_048_576 * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
  }

  /// Starts a phase of `total` steps; `step` reports progress, `end` its closing line.
  public func phase(_ name: String, total: Int) -> Phase { Phase(reporter: self, name: name, total: total) }

  /// A running phase: steps done with rate-based ETA.
  public final class Phase: @unchecked Sendable {
    let reporter: Progress
    public let name: String
    public let total: Int
    public let start = Progress.seconds()

    init(reporter: Progress, name: String, total: Int) {
      self.reporter = reporter
      self.name = name
      self.total = max(1, total)
    }

    /// `done` of `total` steps finished; `detail` follows the count on the status line. The
    /// ETA is this phase's remaining steps at its rate so far, unless `eta` gives one (e.g.
    /// for the whole run a phase belongs to).
    public func step(_ done: Int, _ detail: String = "", eta: Double? = nil) {
      let elapsed = Progress.seconds() - start
      let left = eta ?? (done > 0 ? elapsed / Double(done) * Double(total - done) : .nan)
      let pct = Int(Double(done) / Double(total) * 100)
      reporter.status("\(name) \(done)/\(total) (\(pct)%)\(detail.isEmpty ? "" : "  " + detail)  \(Progress.duration(elapsed)) elapsed, ETA \(Progress.duration(left))")
    }

    /// Seconds since the phase started.
    public var elapsed: Double { Progress.seconds() - start }

    /// Ends the phase without a line of its own (its result is reported elsewhere).
    public func close() { reporter.clearStatus() }

    /// Ends the phase with `text`, or "NAME: done in T" without one.
    public func end(_ text: String? = nil) {
      reporter.line(text ?? "\(name): done in \(Progress.duration(elapsed))")
    }
  }

  /// `42.3 s`, `12 min 5 s`, `1 h 02 min`.
  public static func duration(_ s: Double) -> String {
    guard s.isFinite, s >= 0 else { return "?" }
    if s < 60 { return "\(Int(s * 10) / 10).\(Int(s * 10) % 10) s" }
    let t = Int(s.rounded())
    if t < 3600 { return "\(t / 60) min \(t % 60) s" }
    let m = (t % 3600) / 60
    return "\(t / 3600) h \(m < 10 ? "0" : "")\(m) min"
  }

  static func seconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
  }

  private static func write(_ s: String) {
    var bytes = Array(s.utf8)
    var done = 0
    while done < bytes.count {
      let n = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress! + done, $0.count - done) }  // safe: non-empty
      if n <= 0 { return }
      done += n
    }
  }
}
