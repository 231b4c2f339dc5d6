import QoptIR

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The outcome of a perplexity run (anchors.md protocol).
public struct PerplexityResult: Sendable {
  public var ppl: Double
  public var meanNLL: Double
  public var predictedTokens: Int
  public var windows: Int
  public var seqlen: Int
  /// Wall time of the forward passes (tokenization and loading excluded).
  public var seconds: Double
  /// Tokens run through the model per second (`windows × seqlen / seconds`).
  public var tokensPerSecond: Double { seconds > 0 ? Double(windows * seqlen) / seconds : 0 }
}

/// Perplexity exactly as anchors.md defines it: non-overlapping windows of `seqlen` tokens,
/// the first `windows` of them, no BOS, each window predicting its tokens 1…seqlen−1 from its
/// own prefix; mean NLL over all predictions; ppl = exp(mean NLL).
///
/// The lm_head runs in row chunks fused with the log-softmax, so the `[seqlen, V]` logits are
/// never materialized (at V = 49152 that is 100 MB per 512-token window).
public enum Perplexity {
  public static func evaluate(
    _ interpreter: Interpreter, ids: [Int32], seqlen: Int = 512, windows: Int = 40,
    progress: ((Int, Int) -> Void)? = nil
  ) throws(RuntimeError) -> PerplexityResult {
    guard seqlen >= 2 else { throw RuntimeError("seqlen must be at least 2, got \(seqlen)") }
    let available = ids.count / seqlen
    guard available >= 1 else { throw RuntimeError("\(ids.count) tokens are fewer than one window of \(seqlen)") }
    let n = min(windows, available)
    var total = 0.0
    let start = monotonicSeconds()
    for w in 0..<n {
      BLAS.adapt()  // the free cores, re-measured between windows
      let window = Array(ids[(w * seqlen)..<((w + 1) * seqlen)])
      total += try windowNLL(interpreter, window)
      progress?(w + 1, n)
    }
    let seconds = monotonicSeconds() - start
    let predicted = n * (seqlen - 1)
    let mean = total / Double(predicted)
    return PerplexityResult(ppl: exp(mean), meanNLL: mean, predictedTokens: predicted, windows: n, seqlen: seqlen, seconds: seconds)
  }

  /// Sum of the NLLs of tokens 1…T−1 of one window.
  public static func windowNLL(_ interpreter: Interpreter, _ window: [Int32], chunk: Int = 128) throws(RuntimeError) -> Double {
    let (hidden, head, bias) = try interpreter.runToHead(ids: window)
    let t0 = interpreter.profile == nil ? 0 : monotonicSeconds()
    defer { if interpreter.profile != nil { interpreter.profile?["lm_head+nll", default: 0] += monotonicSeconds() - t0 } }
    let t = window.count - 1
    let d = hidden.columns
    let v = head.shape[0]
    guard head.shape.count == 2, head.shape[1] == d else { throw RuntimeError("lm_head weight does not match the hidden size") }
    let rowsPer = min(chunk, t)
    var logits = [Float](repeating: 0, count: rowsPer * v)
    var scratch = [Float](repeating: 0, count: v)
    var total = 0.0
    hidden.data.withUnsafeBufferPointer { hp in
      window.withUnsafeBufferPointer { ip in
        logits.withUnsafeMutableBufferPointer { lp in
          scratch.withUnsafeMutableBufferPointer { sp in
            var r0 = 0
            while r0 < t {
              let m = min(rowsPer, t - r0)
              // safe: buffers are non-empty (t ≥ 1, v ≥ 1).
              Kernels.linear(hp.baseAddress! + r0 * d, rows: m, inFeatures: d, weight: head.pointer, outFeatures: v, bias: bias?.pointer, into: lp.baseAddress!)
              total += Kernels.nllSum(logits: lp.baseAddress!, rows: m, columns: v, targets: ip.baseAddress! + r0 + 1, scratch: sp.baseAddress!)
              r0 += m
            }
          }
        }
      }
    }
    return total
  }
}

/// Seconds on the monotonic clock.
public func monotonicSeconds() -> Double {
  var t = timespec()
  clock_gettime(CLOCK_MONOTONIC, &t)
  return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// Peak resident set size of this process in MiB (`getrusage` high-water mark).
public func peakRSSMegabytes() -> Double {
  var u = rusage()
  getrusage(RUSAGE_SELF.rawValue, &u)
  return Double(u.ru_maxrss) / 1024
}
