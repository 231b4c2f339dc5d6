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

  /// Folds `n > 0` more logits of one row into a running log-sum-exp: `max` is the largest
  /// logit seen so far (start at −∞), `sum` is Σ exp(x − max) over them (start at 0), kept in
  /// f64; `logsumexp = max + log(sum)` at the end. What lets the lm_head run in vocabulary
  /// chunks: each chunk's Σ is taken against the chunk's own maximum, then rescaled to the
  /// running one (the online softmax of flash attention). O(n).
  public static func foldLogSumExp(
    _ row: UnsafePointer<Float>, count n: Int, max m: inout Double, sum s: inout Double
  ) {
    let cm = FastMath.max(row, count: n)
    let cs = Double(FastMath.expShifted(row, nil, count: n, shift: cm))
    let c = Double(cm)
    if c > m {
      s = s * exp(m - c) + cs
      m = c
    } else {
      s += cs * exp(c - m)
    }
  }
}
