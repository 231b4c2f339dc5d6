import QoptIR

/// What the pass manager reports around each pass (LLVM's `-print-after`, `-time-passes`, …).
public struct Instrumentation: Sendable {
  public var printBefore: Set<String> = []
  public var printAfter: Set<String> = []
  public var printBeforeAll = false
  public var printAfterAll = false
  public var verifyEach = false
  public var timePasses = false
  public var debugPassManager = false

  public init() {}
}

/// Wall-clock seconds for `-time-passes`.
public func now() -> Double {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

#if canImport(Glibc)
  import Glibc
#endif

/// The `-time-passes` report, in the shape LLVM prints (`title` names what was timed).
public func timingReport(_ rows: [(String, Double)], title: String = "Pass execution timing report") -> String {
  let total = rows.reduce(0) { $0 + $1.1 }
  func fmt(_ x: Double) -> String {
    let s = String(Int((x * 10000).rounded()))
    let padded = String(repeating: "0", count: max(0, 5 - s.count)) + s
    return String(padded.dropLast(4)) + "." + padded.suffix(4)
  }
  func pct(_ x: Double) -> String {
    let p = total > 0 ? x / total * 100 : 0
    let s = String(Int((p * 10).rounded()))
    let padded = String(repeating: "0", count: max(0, 2 - s.count)) + s
    let v = String(padded.dropLast()) + "." + padded.suffix(1)
    return String(repeating: " ", count: max(0, 5 - v.count)) + v
  }
  var out = "===" + String(repeating: "-", count: 70) + "===\n"
  let heading = "... \(title) ..."
  out += String(repeating: " ", count: max(0, (80 - heading.count) / 2)) + heading + "\n"
  out += "===" + String(repeating: "-", count: 70) + "===\n"
  out += "  Total Execution Time: \(fmt(total)) seconds\n\n"
  out += "   ---Wall Time---  --- Name ---\n"
  for (name, t) in rows { out += "   \(fmt(t)) (\(pct(t))%)  \(name)\n" }
  out += "   \(fmt(total)) (100.0%)  Total\n"
  return out
}
