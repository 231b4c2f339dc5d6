import QoptIR

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// What `llama-perplexity --kl-divergence` reports about a model against its base (float)
/// model over the same windows: the evaluated model's perplexity, the KL divergence of its
/// next-token distributions from the base's, per predicted token, and how often both put the
/// same token first.
public struct KLDivergenceResult: Sendable {
  /// Perplexity of the evaluated model and of the base model on the same windows.
  public var ppl: Double
  public var basePPL: Double
  /// `KL(P_base ‖ P_model) = Σ_v p_base(v) · (log p_base(v) − log p_model(v))` per predicted
  /// token, in nats: mean, median, 99th percentile and maximum over all predictions.
  public var meanKL: Double
  public var medianKL: Double
  public var p99KL: Double
  public var maxKL: Double
  /// Fraction of predictions where both models' most likely token is the same (llama.cpp's
  /// "Same top p").
  public var top1Agreement: Double
  public var predictedTokens: Int
  public var windows: Int
  public var seqlen: Int
  public var seconds: Double
}

/// KL divergence of a model's next-token distributions from a base model's (anchors.md windows:
/// non-overlapping windows of `seqlen`, no BOS, predictions 1…seqlen−1 of each window).
///
/// Both lm_heads run in row chunks, as `Perplexity` does, so neither `[seqlen, V]` logit matrix
/// is held whole.
public enum KLDivergence {
  /// Per-window statistics of `compare`: one KL per predicted row, the two NLL sums and how many
  /// rows agree on the most likely token.
  public struct WindowStats: Sendable {
    public var kl: [Double] = []
    public var nll = 0.0
    public var baseNLL = 0.0
    public var sameTop = 0
    public init() {}

    mutating func merge(_ o: WindowStats) {
      kl += o.kl
      nll += o.nll
      baseNLL += o.baseNLL
      sameTop += o.sameTop
    }
  }

  public static func evaluate(
    _ model: Interpreter, base: Interpreter, ids: [Int32], seqlen: Int = 512, windows: Int = 40,
    progress: ((Int, Int) -> Void)? = nil
  ) throws(RuntimeError) -> KLDivergenceResult {
    guard seqlen >= 2 else { throw RuntimeError("seqlen must be at least 2, got \(seqlen)") }
    let available = ids.count / seqlen
    guard available >= 1 else {
      throw RuntimeError("\(ids.count) tokens are fewer than one window of \(seqlen)")
    }
    let n = min(windows, available)
    var all = WindowStats()
    let start = monotonicSeconds()
    for w in 0..<n {
      BLAS.adapt()
      all.merge(try window(model, base: base, Array(ids[(w * seqlen)..<((w + 1) * seqlen)])))
      progress?(w + 1, n)
    }
    let predicted = n * (seqlen - 1)
    let sorted = all.kl.sorted()
    func quantile(_ q: Double) -> Double {
      sorted[min(sorted.count - 1, Int((q * Double(sorted.count - 1)).rounded()))]
    }
    return KLDivergenceResult(
      ppl: exp(all.nll / Double(predicted)), basePPL: exp(all.baseNLL / Double(predicted)),
      meanKL: all.kl.reduce(0, +) / Double(predicted), medianKL: quantile(0.5),
      p99KL: quantile(0.99), maxKL: sorted.last ?? 0,
      top1Agreement: Double(all.sameTop) / Double(predicted), predictedTokens: predicted,
      windows: n, seqlen: seqlen, seconds: monotonicSeconds() - start)
  }

  /// One window through both models, compared row chunk by row chunk.
  public static func window(
    _ model: Interpreter, base: Interpreter, _ window: [Int32], chunk: Int = 128
  ) throws(RuntimeError) -> WindowStats {
    let m = try model.runToHead(ids: window)
    let b = try base.runToHead(ids: window)
    let t = window.count - 1
    let d = m.hidden.columns
    let v = m.head.shape[0]
    guard m.head.shape == [v, d], b.head.shape == [v, d], b.hidden.columns == d else {
      throw RuntimeError(
        "the two models' lm_heads differ in shape (\(m.head.shape) vs \(b.head.shape))")
    }
    let rowsPer = min(chunk, t)
    var lm = [Float](repeating: 0, count: rowsPer * v)
    var lb = [Float](repeating: 0, count: rowsPer * v)
    var stats = WindowStats()
    m.hidden.data.withUnsafeBufferPointer { mh in
      b.hidden.data.withUnsafeBufferPointer { bh in
        window.withUnsafeBufferPointer { ip in
          lm.withUnsafeMutableBufferPointer { lmp in
            lb.withUnsafeMutableBufferPointer { lbp in
              var r0 = 0
              while r0 < t {
                let rows = min(rowsPer, t - r0)
                // safe: buffers are non-empty (t ≥ 1, v ≥ 1).
                Kernels.linear(
                  mh.baseAddress! + r0 * d, rows: rows, inFeatures: d, weight: m.head.pointer,
                  outFeatures: v, bias: m.bias?.pointer, into: lmp.baseAddress!)
                Kernels.linear(
                  bh.baseAddress! + r0 * d, rows: rows, inFeatures: d, weight: b.head.pointer,
                  outFeatures: v, bias: b.bias?.pointer, into: lbp.baseAddress!)
                stats.merge(
                  compare(
                    base: lbp.baseAddress!, model: lmp.baseAddress!, rows: rows, columns: v,
                    targets: ip.baseAddress! + r0 + 1))
                r0 += rows
              }
            }
          }
        }
      }
    }
    return stats
  }

  /// Logits `[T−1, V]` of the rows that predict tokens 1…T−1 of `window` (for callers that
  /// compare many models against one cached base, such as `assign-schemes<score=kl>`).
  public static func logits(
    _ interpreter: Interpreter, _ window: [Int32]
  ) throws(RuntimeError)
    -> [Float]
  {
    let h = try interpreter.runToHead(ids: window)
    let t = window.count - 1
    let d = h.hidden.columns
    let v = h.head.shape[0]
    var out = [Float](repeating: 0, count: t * v)
    h.hidden.data.withUnsafeBufferPointer { hp in
      out.withUnsafeMutableBufferPointer { op in
        // safe: non-empty (t ≥ 1).
        Kernels.linear(
          hp.baseAddress!, rows: t, inFeatures: d, weight: h.head.pointer, outFeatures: v,
          bias: h.bias?.pointer, into: op.baseAddress!)
      }
    }
    return out
  }

  /// Compares `rows` rows of `columns` logits: per row the KL of the model's softmax from the
  /// base's (in f64), the NLL of `targets[r]` under each (when given), and whether the argmaxes
  /// (first index on ties) agree.
  public static func compare(
    base: UnsafePointer<Float>, model: UnsafePointer<Float>, rows: Int, columns v: Int,
    targets: UnsafePointer<Int32>?
  ) -> WindowStats {
    var s = WindowStats()
    s.kl.reserveCapacity(rows)
    for r in 0..<rows {
      let b = base + r * v
      let m = model + r * v
      var (bMax, mMax, bArg, mArg) = (b[0], m[0], 0, 0)
      for j in 1..<max(v, 1) {
        if b[j] > bMax { (bMax, bArg) = (b[j], j) }
        if m[j] > mMax { (mMax, mArg) = (m[j], j) }
      }
      var (bSum, mSum) = (0.0, 0.0)
      for j in 0..<v {
        bSum += exp(Double(b[j] - bMax))
        mSum += exp(Double(m[j] - mMax))
      }
      let bLSE = Double(bMax) + log(bSum)
      let mLSE = Double(mMax) + log(mSum)
      var kl = 0.0
      for j in 0..<v {
        let lb = Double(b[j]) - bLSE
        let lm = Double(m[j]) - mLSE
        kl += exp(lb) * (lb - lm)
      }
      s.kl.append(max(kl, 0))
      if let targets {
        let y = Int(targets[r])
        s.nll += mLSE - Double(m[y])
        s.baseNLL += bLSE - Double(b[y])
      }
      if bArg == mArg { s.sameTop += 1 }
    }
    return s
  }
}
