import Dispatch
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
/// The lm_head runs in vocabulary chunks fused with the log-softmax (`windowNLL`), so the
/// `[seqlen, V]` logits are never materialized.
public enum Perplexity {
  public static func evaluate(
    _ interpreter: Interpreter, ids: [Int32], seqlen: Int = 512, windows: Int = 40,
    progress: ((Int, Int) -> Void)? = nil
  ) throws(RuntimeError) -> PerplexityResult {
    guard seqlen >= 2 else { throw RuntimeError("seqlen must be at least 2, got \(seqlen)") }
    let available = ids.count / seqlen
    guard available >= 1 else {
      throw RuntimeError("\(ids.count) tokens are fewer than one window of \(seqlen)")
    }
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
    return PerplexityResult(
      ppl: exp(mean), meanNLL: mean, predictedTokens: predicted, windows: n, seqlen: seqlen,
      seconds: seconds)
  }

  /// Sum of the NLLs of tokens 1…T−1 of one window.
  ///
  /// The lm_head runs over all T−1 rows at once in chunks of `chunk` vocabulary entries, each
  /// chunk's logits folded into a running log-sum-exp per row (`Kernels.foldLogSumExp`) while
  /// they are still in cache. So the head's weight is read (and packed by the BLAS) once per
  /// window, not once per row block, and the `[T, V]` logits never exist (at V = 49152 that
  /// is 100 MB per 512-token window). The folds of a chunk's rows are split between
  /// `attentionWorkers` threads; each row's sum is its own, so the result does not depend on
  /// the thread count.
  public static func windowNLL(
    _ interpreter: Interpreter, _ window: [Int32], chunk: Int = 4096
  ) throws(RuntimeError) -> Double {
    let (hidden, head, bias) = try interpreter.runToHead(ids: window)
    let t = window.count - 1
    let d = hidden.columns
    let v = head.shape[0]
    guard head.shape.count == 2, head.shape[1] == d else {
      throw RuntimeError("lm_head weight does not match the hidden size")
    }
    guard window.allSatisfy({ $0 >= 0 && Int($0) < v }) else {
      throw RuntimeError("a target token id is outside the vocabulary (0..<\(v))")
    }
    let cols = max(1, min(chunk, v))
    let logits = UnsafeMutablePointer<Float>.allocate(capacity: t * cols)
    let state = UnsafeMutablePointer<Double>.allocate(capacity: 3 * t)  // max, sum, target logit
    defer {
      logits.deallocate()
      state.deallocate()
    }
    for r in 0..<t { (state[r], state[t + r], state[2 * t + r]) = (-.infinity, 0, 0) }
    let workers = min(max(1, interpreter.attentionWorkers), t)
    let (lAddr, sAddr) = (Int(bitPattern: logits), Int(bitPattern: state))
    let biasAddr = bias.map { Int(bitPattern: $0.pointer) }
    hidden.data.withUnsafeBufferPointer { hp in
      var c0 = 0
      while c0 < v {
        let n = min(cols, v - c0)
        interpreter.timed("lm_head") {
          // safe: hidden has t + 1 ≥ 2 rows; the head has v rows of d.
          BLAS.sgemm(
            transB: true, m: t, n: n, k: d, a: hp.baseAddress!, lda: d, b: head.pointer + c0 * d,
            ldb: d, c: logits, ldc: n)
        }
        let first = c0
        interpreter.timed("nll") {
          // Rows [lo, hi) of this chunk; addresses travel as integers so the closure is Sendable.
          let fold = { @Sendable (part: Int) in
            let lo = part * t / workers, hi = (part + 1) * t / workers
            // safe: the buffers outlive the (synchronous) loop below.
            let l = UnsafeMutablePointer<Float>(bitPattern: lAddr)!,
              st = UnsafeMutablePointer<Double>(bitPattern: sAddr)!
            let b = biasAddr.flatMap { UnsafePointer<Float>(bitPattern: $0) }
            for r in lo..<hi {
              let row = l + r * n
              if let b { for j in 0..<n { row[j] += b[first + j] } }
              Kernels.foldLogSumExp(row, count: n, max: &st[r], sum: &st[t + r])
              let target = Int(window[r + 1]) - first
              if target >= 0 && target < n { st[2 * t + r] = Double(row[target]) }
            }
          }
          if workers > 1 {
            DispatchQueue.concurrentPerform(iterations: workers, execute: fold)
          } else {
            fold(0)
          }
        }
        c0 += n
      }
    }
    var total = 0.0
    for r in 0..<t { total += state[r] + log(state[t + r]) - state[2 * t + r] }
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
