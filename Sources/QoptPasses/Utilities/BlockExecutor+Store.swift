import QoptRuntime

extension BlockExecutor {
  /// Runs the block on every sample of `x`, `batch` samples at a time, appending the outputs to
  /// `out` when given (the block passes' propagation step). Holds one batch of inputs at a time.
  func forward(all x: ActivationStore, batch: Int, into out: ActivationStore?) throws {
    let n = x.samples, per = x.sampleFloats
    let b = max(1, min(batch, n))
    var buffer = [Float](repeating: 0, count: b * per)
    try buffer.withUnsafeMutableBufferPointer { xp in
      var s = 0
      while s < n {
        let m = min(b, n - s)
        try x.read(s..<(s + m), into: xp.baseAddress!)  // safe: n > 0 inside the loop
        let y = forward(xp.baseAddress!, samples: m, tokens: x.tokens)  // safe: as above
        try out?.append(y, samples: m)
        s += m
      }
    }
  }
}
