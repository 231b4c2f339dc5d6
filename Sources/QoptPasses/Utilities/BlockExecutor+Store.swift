import QoptRuntime

extension BlockExecutor {
  /// Runs the block on every sample of `x`, `batch` samples at a time, appending the outputs to
  /// `out` when given (the block passes' propagation step). Holds one batch of inputs at a time.
  /// No batch crosses a sample index in `ends` (the ends of data shards, `CalibrationShards`);
  /// `willRun` hears each batch's samples before it runs.
  func forward(
    all x: ActivationStore, batch: Int, into out: ActivationStore?, ends: [Int] = [],
    willRun: ((Range<Int>) -> Void)? = nil
  ) throws {
    let n = x.samples, per = x.sampleFloats
    let b = max(1, min(batch, n))
    var buffer = [Float](repeating: 0, count: b * per)
    try buffer.withUnsafeMutableBufferPointer { xp in
      var s = 0
      while s < n {
        var m = min(b, n - s)
        if let e = ends.first(where: { $0 > s }) { m = min(m, e - s) }
        willRun?(s..<(s + m))
        try x.read(s..<(s + m), into: xp.baseAddress!)  // safe: n > 0 inside the loop
        let y = forward(xp.baseAddress!, samples: m, tokens: x.tokens)  // safe: as above
        try out?.append(y, samples: m)
        s += m
      }
    }
  }
}
