import QoptIR
import QoptRuntime

// The tuning loop of one block: SignSGD over the rounding offsets and clipping factors on
// mini-batches drawn by auto-round's sampler.

/// What one block's tuning reports.
package struct BlockReport {
  package var index: Int
  package var firstLoss: Double
  package var bestLoss: Double
  package var bestIteration: Int
  package var seconds: Double
}

extension AutoRoundRun {
  /// The SignSGD loop of autoround.md §5 for one block: inputs `x`, targets `y` (same sample
  /// count), each mini-batch read from them.
  package func tune(
    _ exec: BlockExecutor, _ linears: [any TunableLinear], x: ActivationStore, y: ActivationStore,
    block: Int
  ) throws -> BlockReport {
    let n = x.samples, t = x.tokens, per = x.sampleFloats
    let iters = options.iters
    let lr = options.effectiveLR
    let minmaxLR = options.minmaxLR.map { Float($0) } ?? lr
    let batch = max(1, min(options.batchSize, n))
    var sampler = IndexSampler(
      count: n, batch: batch, seed: UInt64(options.seed) &* 0x1_0000_0001 &+ UInt64(block))
    var xb = [Float](repeating: 0, count: batch * per)
    var yb = xb
    var dy = xb
    var gv = linears.map { [Float](repeating: 0, count: $0.rows * $0.cols) }
    var ga = linears.map { [Float](repeating: 0, count: $0.rows * $0.groupsPerRow) }
    var gb = ga
    var best = Double.infinity, first = 0.0, bestIter = 0
    var snapshot = linears.map(\.parameters)
    for it in 0..<iters {
      BLAS.adapt()  // the free cores, re-measured between iterations
      let idx = sampler.next()
      try xb.withUnsafeMutableBufferPointer { try x.read(idx, into: $0.baseAddress!) }  // safe: non-empty
      try yb.withUnsafeMutableBufferPointer { try y.read(idx, into: $0.baseAddress!) }  // safe: non-empty
      exec.timed("quantize-dequantize weights") {
        for l in linears { l.qdq(into: exec.weightPointer(l.name)!) }  // safe: the executor loaded every block weight
      }
      let out = xb.withUnsafeBufferPointer {
        exec.forward($0.baseAddress!, samples: batch, tokens: t)
      }  // safe: non-empty
      // loss = mean((ŷ − y)²); ∂loss/∂ŷ = 2(ŷ − y)/count.
      let count = batch * per
      var loss = 0.0
      yb.withUnsafeBufferPointer { yp in
        dy.withUnsafeMutableBufferPointer { dp in
          let k = 2 / Float(count)
          var acc: Float = 0
          var chunkSum = 0.0
          for i in 0..<count {
            let d = out[i] - yp[i]
            acc += d * d
            dp[i] = k * d
            if i & 4095 == 4095 { chunkSum += Double(acc); acc = 0 }
          }
          loss = (chunkSum + Double(acc)) / Double(count)
        }
      }
      if it == 0 { first = loss }
      if loss < best {
        best = loss
        bestIter = it
        snapshot = linears.map(\.parameters)
      }
      onIteration?(it + 1, loss)
      let grads = dy.withUnsafeBufferPointer { exec.backward($0.baseAddress!) }  // safe: non-empty
      let factor = 1 - Float(it) / Float(iters)
      exec.timed("SignSGD gradients + step") {
        for (k, l) in linears.enumerated() {
          gv[k].withUnsafeMutableBufferPointer { v in
            ga[k].withUnsafeMutableBufferPointer { a in
              gb[k].withUnsafeMutableBufferPointer { b in
                l.backward(
                  dw: grads[l.name]!, dv: v.baseAddress!, dAlpha: a.baseAddress!,
                  dBeta: b.baseAddress!)  // safe: trainable weights all get gradients
                l.step(
                  dv: v.baseAddress!, dAlpha: a.baseAddress!, dBeta: b.baseAddress!,
                  lr: lr * factor, minmaxLR: minmaxLR * factor, tuneMinmax: options.minmaxTuning)  // safe: as above
              }
            }
          }
        }
      }
    }
    if options.useBest {
      for (l, s) in zip(linears, snapshot) { l.parameters = s }
    } else {
      bestIter = iters - 1
    }
    return BlockReport(
      index: block, firstLoss: first, bestLoss: best, bestIteration: bestIter, seconds: 0)
  }
}

/// auto-round's `IndexSampler`: a shuffled permutation of the sample indices consumed in order,
/// reshuffled when fewer than a full batch remain (the leftover is dropped). The shuffle is a
/// Fisher–Yates driven by SplitMix64 (not torch's generator).
struct IndexSampler {
  var indices: [Int]
  var position = 0
  let batch: Int
  var rng: SplitMix64

  init(count: Int, batch: Int, seed: UInt64) {
    indices = Array(0..<count)
    self.batch = batch
    rng = SplitMix64(seed: seed)
    shuffle()
  }

  mutating func shuffle() {
    for i in stride(from: indices.count - 1, to: 0, by: -1) {
      let j = Int(rng.next() % UInt64(i + 1))
      indices.swapAt(i, j)
    }
    position = 0
  }

  mutating func next() -> ArraySlice<Int> {
    if position + batch > indices.count { shuffle() }
    defer { position += batch }
    return indices[position..<(position + batch)]
  }
}
