#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

extension Kernels {
  /// Negative log-likelihood of `targets[t]` under `softmax(logits[t, :])` for each row:
  /// `logsumexp(row) − row[target]`, with the row maximum subtracted first. Returns the sum
  /// over rows in f64. `scratch` holds `columns` floats. O(rows·columns).
  public static func nllSum(
    logits: UnsafePointer<Float>, rows: Int, columns v: Int, targets: UnsafePointer<Int32>,
    scratch: UnsafeMutablePointer<Float>
  ) -> Double {
    var total = 0.0
    for r in 0..<rows {
      let row = logits + r * v
      let mx = FastMath.max(row, count: v)
      let sum = FastMath.expShifted(row, nil, count: v, shift: mx)
      let lse = Double(mx) + log(Double(sum))
      total += lse - Double(row[Int(targets[r])])
    }
    return total
  }
}
