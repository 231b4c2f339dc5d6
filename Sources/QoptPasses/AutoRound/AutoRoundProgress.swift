import QoptIR
import QoptRuntime

#if canImport(Glibc)
  import Glibc
#endif

// The lines `autoround` prints: per-block progress and the closing summary table.

/// A closing line on stderr (silenced by `-quiet`).
func progress(_ line: String) {
  Progress.shared.line(line)
}

/// A loss with four significant digits in scientific notation (`1.234e-3`).
func lossText(_ x: Double) -> String {
  if x == 0 || !x.isFinite { return "\(x)" }
  var e = Int((log10(abs(x))).rounded(.down))
  var mi = Int((abs(x) / pow(10, Double(e)) * 1000).rounded())
  if mi >= 10000 { mi /= 10; e += 1 }
  let frac = String(mi % 1000)
  return (x < 0 ? "-" : "") + "\(mi / 1000)." + String(repeating: "0", count: 3 - frac.count) + frac
    + "e\(e)"
}

extension AutoRoundRun {
  /// The closing table: each block's first and best loss, best iteration and seconds.
  func summaryTable(_ reports: [BlockReport]) -> String {
    let what =
      options.quantScheme == "nvfp4"
      ? "NVFP4"
      : "W\(options.bits) group \(options.groupSize.map(String.init) ?? "auto") \(options.sym ? "sym" : "asym")"
    var table = "autoround summary (\(options.iters) iters, \(what)):\n"
    table += "  block   first loss    best loss  best iter  seconds\n"
    for r in reports {
      table +=
        "  " + pad("\(r.index)", 5) + "  " + pad(lossText(r.firstLoss), 11) + "  "
        + pad(lossText(r.bestLoss), 11) + "  " + pad("\(r.bestIteration)", 9) + "  "
        + pad(String(format1: r.seconds), 7) + "\n"
    }
    return table
  }
}

private func pad(_ s: String, _ n: Int) -> String {
  String(repeating: " ", count: max(0, n - s.count)) + s
}

extension String {
  /// `x` with one decimal.
  init(format1 x: Double) {
    let r = (x * 10).rounded() / 10
    let i = Int(r)
    let f = Int((abs(r - Double(i)) * 10).rounded())
    self = "\(r < 0 && i == 0 ? "-" : "")\(i).\(f)"
  }
}
