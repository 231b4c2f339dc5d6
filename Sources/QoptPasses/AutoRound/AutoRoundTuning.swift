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
  ///
  /// Memory (why it is laid out so): the executor holds none of the tuned weights — each is
  /// streamed (`BlockExecutor.stream`), its fake-quantized values written into the executor's
  /// scratch when a linear reads it, and its gradient taken and stepped on at once
  /// (`weightGradientSink`), in place in that scratch. Per weight that leaves the linear's
  /// source and V. The best iteration is kept only when it is neither the initial parameters
  /// (iteration 0) nor the last iteration's (whose step is never used), and then as its codes
  /// (`saveBest`: half a byte a weight at ≤ 4 bits instead of V's four): the results are those
  /// of the plain loop, bit for bit.
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
    var ga = linears.map { [Float](repeating: 0, count: $0.rows * $0.groupsPerRow) }
    var gb = ga
    var best = Double.infinity, first = 0.0, bestIter = 0
    // The starting parameters until an iteration's loss is known (a NaN loss keeps them).
    var snapshot = BestParameters.initial
    if !linears.allSatisfy({ $0.hasInitialParameters }) {
      for l in linears { l.saveBest() }
      snapshot = .saved
    }
    // The step of this iteration, applied to a linear as soon as its gradient is made.
    var factor: Float = 1
    func step(_ k: Int, _ l: any TunableLinear, _ dw: UnsafeMutablePointer<Float>) {
      ga[k].withUnsafeMutableBufferPointer { a in
        gb[k].withUnsafeMutableBufferPointer { b in
          // safe: one per group
          l.backward(dw: dw, dv: dw, dAlpha: a.baseAddress!, dBeta: b.baseAddress!)
          l.step(
            dv: dw, dAlpha: a.baseAddress!, dBeta: b.baseAddress!, lr: lr * factor,
            minmaxLR: minmaxLR * factor, tuneMinmax: options.minmaxTuning)
        }
      }
    }
    // Streamed where the executor can (a weight one linear reads), held and filled before each
    // forward otherwise.
    var index: [String: Int] = [:]
    var held: [Int] = []
    // A caller that handed over held weights gets them back held, with the kept parameters.
    let wasHeld = linears.map(\.name).filter { !exec.isStreamed($0) }
    defer { for name in wasHeld { exec.hold(name) } }
    for (k, l) in linears.enumerated() {
      if exec.stream(l.name, fill: { l.qdq(into: $0) }) {
        index[l.name] = k
      } else {
        held.append(k)
      }
    }
    exec.weightGradientSink = { name, dw in
      guard let k = index[name] else { return }
      step(k, linears[k], dw)
    }
    defer { exec.weightGradientSink = nil }
    for it in 0..<iters {
      BLAS.adapt()  // the free cores, re-measured between iterations
      let idx = sampler.next()
      // safe: non-empty
      try xb.withUnsafeMutableBufferPointer { try x.read(idx, into: $0.baseAddress!) }
      // safe: non-empty
      try yb.withUnsafeMutableBufferPointer { try y.read(idx, into: $0.baseAddress!) }
      exec.timed("quantize-dequantize weights") {
        // safe: the executor holds every weight it does not stream
        for k in held { linears[k].qdq(into: exec.weightPointer(linears[k].name)!) }
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
      let last = it == iters - 1
      if loss < best {
        best = loss
        bestIter = it
        if options.useBest {
          if last {
            snapshot = .current
          } else if linears.allSatisfy({ $0.hasInitialParameters }) {
            snapshot = .initial
          } else {
            for l in linears { l.saveBest() }
            snapshot = .saved
          }
        }
      }
      onIteration?(it + 1, loss)
      // The last step only matters when the last parameters are kept.
      if last && options.useBest { break }
      factor = 1 - Float(it) / Float(iters)
      let grads = dy.withUnsafeBufferPointer { exec.backward($0.baseAddress!) }  // safe: non-empty
      exec.timed("SignSGD gradients + step") {
        for k in held {
          let l = linears[k]
          // safe: trainable weights all get gradients; the executor's own buffer, overwritten by the next backward
          step(k, l, UnsafeMutablePointer(mutating: grads[l.name]!))
        }
      }
    }
    if options.useBest {
      switch snapshot {
      case .initial: for l in linears { l.resetParameters() }
      case .current: break
      case .saved: for l in linears { l.restoreBest() }
      }
    } else {
      bestIter = iters - 1
    }
    return BlockReport(
      index: block, firstLoss: first, bestLoss: best, bestIteration: bestIter, seconds: 0)
  }
}

/// Where the best iteration's parameters are: the initial ones (restored by
/// `resetParameters`), the current ones (the last iteration's, never stepped from), or kept by
/// each linear's `saveBest`.
private enum BestParameters {
  case initial
  case current
  case saved
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
