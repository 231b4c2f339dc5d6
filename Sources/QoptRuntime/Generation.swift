import QoptIR

/// Greedy decoding: each step runs `@main` over the whole sequence so far (no KV cache — the
/// command is for a short sample, not for serving) and appends the arg-max of the last
/// position's logits.
public enum Generation {
  /// `count` new token ids after `prompt`; `step` sees each as it is chosen.
  public static func greedy(
    _ interpreter: Interpreter, prompt: [Int32], count: Int, step: ((Int32) -> Void)? = nil
  ) throws(RuntimeError) -> [Int32] {
    guard !prompt.isEmpty else { throw RuntimeError("the prompt has no tokens") }
    var ids = prompt
    var out: [Int32] = []
    for _ in 0..<count {
      BLAS.adapt()  // the free cores, re-measured between tokens
      let next = try nextToken(interpreter, ids)
      ids.append(next)
      out.append(next)
      step?(next)
    }
    return out
  }

  /// The arg-max of the logits at the last position of `ids` (lowest id on ties).
  public static func nextToken(_ interpreter: Interpreter, _ ids: [Int32]) throws(RuntimeError) -> Int32 {
    let (hidden, head, bias) = try interpreter.runToHead(ids: ids)
    let d = hidden.columns
    guard head.shape.count == 2, head.shape[1] == d else { throw RuntimeError("lm_head weight does not match the hidden size") }
    let v = head.shape[0]
    guard v > 0, hidden.rows > 0 else { throw RuntimeError("the model produced no logits") }
    var logits = [Float](repeating: 0, count: v)
    hidden.data.withUnsafeBufferPointer { hp in
      logits.withUnsafeMutableBufferPointer { lp in
        // safe: hidden has at least one row of d values and v ≥ 1 (checked shapes).
        Kernels.linear(hp.baseAddress! + (hidden.rows - 1) * d, rows: 1, inFeatures: d, weight: head.pointer, outFeatures: v, bias: bias?.pointer, into: lp.baseAddress!)
      }
    }
    var best = 0
    for i in 1..<v where logits[i] > logits[best] { best = i }
    return Int32(best)
  }
}
