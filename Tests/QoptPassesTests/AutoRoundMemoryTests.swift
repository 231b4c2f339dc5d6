import QoptIR
import QoptPasses
import QoptRuntime
import QoptTestSupport
import Testing

// autoround's per-block working set (docs/autoround.md "Memory"): streamed weights, gradients
// taken and stepped on in place, best parameters copied only when needed, bf16 sources read a
// row at a time. None of it may change a result bit: each test compares with the plain way.

private func bits(_ p: UnsafePointer<Float>, _ n: Int) -> [UInt32] {
  UnsafeBufferPointer(start: p, count: n).map(\.bitPattern)
}

private func linearNames(_ f: Function) -> [String] {
  f.body.filter { $0.kind == .linear }.compactMap { $0.operands[1].definingOp?.paramName }
}

/// A block with streamed linear weights computes the same output, and hands its sink the same
/// weight gradients, bit for bit, as the block holding them.
@Test func streamedBlockExecutorMatchesHeld() throws {
  let m = ExampleModel.make()
  let f = try #require(m.function(named: "block.0"))
  let names = linearNames(f)
  let held = try BlockExecutor(function: f, module: m)
  let streamed = try BlockExecutor(function: f, module: m, streaming: Set(names))
  for n in names { #expect(streamed.isStreamed(n) && streamed.weightPointer(n) == nil) }
  held.trainable = Set(names)
  streamed.trainable = Set(names)
  var sunk: [String: [UInt32]] = [:]
  streamed.weightGradientSink = { name, g in
    sunk[name] = bits(g, streamed.weightShape(name)!.reduce(1, *))  // safe: a block weight
  }
  var rng = SplitMix64(seed: 5)
  let (samples, t, d) = (2, 21, held.hiddenWidth)
  let x = (0..<(samples * t * d)).map { _ in Float(rng.normal()) }
  let g = (0..<(samples * t * d)).map { _ in Float(rng.normal()) }
  let ya = bits(held.forward(x, samples: samples, tokens: t), x.count)
  let yb = bits(streamed.forward(x, samples: samples, tokens: t), x.count)
  #expect(ya == yb)
  let ga = held.backward(g)
  #expect(streamed.backward(g).isEmpty)
  for n in names {
    let count = try #require(held.weightShape(n)).reduce(1, *)
    #expect(bits(try #require(ga[n]), count) == sunk[n], "\(n)")
  }
  // Held again, a weight is the module's.
  streamed.hold(names[0])
  let w = try #require(m.weights.dense(names[0])).floats()
  #expect(bits(try #require(streamed.weightPointer(names[0])), w.count) == w.map(\.bitPattern))
}

/// A linear whose source is the checkpoint's bf16, read a row at a time, tunes to the same
/// codes and scales as one given the same values as f32; the gradient taken in place (`dv` is
/// `dw`) equals the one into its own buffer.
@Test func signRoundFromBF16RowsMatchesF32() throws {
  var rng = SplitMix64(seed: 8)
  let (rows, cols) = (6, 40)
  let raw = (0..<(rows * cols)).map { _ in UInt16(Float(rng.normal() * 0.05).bitPattern >> 16) }
  let bf16 = TensorData(
    dtype: .bf16, shape: [rows, cols], bytes: raw.withUnsafeBytes { Array($0) })
  let floats = bf16.floats()
  let scheme = IntScheme(bits: 4, symmetric: false, granularity: .group(16), scaleType: .f16)
  let a = SignRoundLinear(name: "w", weights: floats, rows: rows, cols: cols, scheme: scheme)
  let b = SignRoundLinear(
    name: "w", rows: try #require(WeightRows(decoding: TensorData(f32Decoding: bf16))),
    scheme: scheme)
  let dw = (0..<(rows * cols)).map { _ in Float(rng.normal()) }
  for _ in 0..<3 {
    var qa = [Float](repeating: 0, count: rows * cols)
    var qb = qa
    qa.withUnsafeMutableBufferPointer { a.qdq(into: $0.baseAddress!) }  // safe: non-empty
    qb.withUnsafeMutableBufferPointer { b.qdq(into: $0.baseAddress!) }  // safe: non-empty
    #expect(qa.map(\.bitPattern) == qb.map(\.bitPattern))
    var dvA = [Float](repeating: 0, count: rows * cols)
    var inPlace = dw
    var (da, db) = (
      [Float](repeating: 0, count: a.alpha.count), [Float](repeating: 0, count: a.alpha.count)
    )
    var (da2, db2) = (da, db)
    a.backward(dw: dw, dv: &dvA, dAlpha: &da, dBeta: &db)
    inPlace.withUnsafeMutableBufferPointer {
      // safe: non-empty
      b.backward(dw: $0.baseAddress!, dv: $0.baseAddress!, dAlpha: &da2, dBeta: &db2)
    }
    #expect(dvA.map(\.bitPattern) == inPlace.map(\.bitPattern))
    #expect(da == da2 && db == db2)
    a.step(dv: dvA, dAlpha: da, dBeta: db, lr: 0.1, minmaxLR: 0.1, tuneMinmax: true)
    b.step(dv: inPlace, dAlpha: da2, dBeta: db2, lr: 0.1, minmaxLR: 0.1, tuneMinmax: true)
  }
  let fa = a.finalize(), fb = b.finalize()
  #expect(fa.codes.bytes == fb.codes.bytes && fa.scale.bytes == fb.scale.bytes)
  #expect(fa.zeroPoint?.bytes == fb.zeroPoint?.bytes)
}

private func options(_ pipeline: String) throws -> AutoRoundOptions {
  let inv = try PipelineParser.parse(pipeline, registry: .builtin())
  return try #require(inv.first?.options as? AutoRoundOptions)
}

/// auto-round's sampler as `tune` draws from it (a reshuffled permutation, leftovers dropped).
private struct Sampler {
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
      indices.swapAt(i, Int(rng.next() % UInt64(i + 1)))
    }
    position = 0
  }
  mutating func next() -> ArraySlice<Int> {
    if position + batch > indices.count { shuffle() }
    defer { position += batch }
    return indices[position..<(position + batch)]
  }
}

/// `tune` — streamed weights, gradients stepped on as they are made, no copy of the initial or
/// last parameters, no last step, a best iteration kept as codes — gives the codes, scales,
/// dequantized weights and report of the plain SignSGD loop (every weight held, all gradients
/// first, a copy of V at every new best, every step taken), bit for bit. `middle`: the best
/// iteration is neither the first nor the last, so the result is the kept codes put back.
@Test(arguments: [
  ("autoround<iters=1;lr=0.25;group-size=32;batch-size=2>", false, false),
  ("autoround<iters=2;lr=0.25;group-size=32;batch-size=2>", false, false),
  ("autoround<iters=6;lr=0.125;group-size=32;batch-size=2;no-sym;bits=3>", false, false),
  ("autoround<iters=4;lr=0.25;group-size=32;batch-size=2;no-use-best>", false, false),
  ("autoround<iters=5;lr=0.25;batch-size=2;scheme=nvfp4>", true, true),
  ("autoround<iters=6;lr=2;group-size=32;batch-size=2>", false, true),
  ("autoround<iters=6;lr=4;group-size=32;batch-size=2;no-sym>", false, true),
  ("autoround<iters=6;lr=2;group-size=32;batch-size=2;bits=8>", false, true),
])
func tuneMatchesPlainLoop(_ pipeline: String, _ nvfp4: Bool, _ middle: Bool) throws {
  let m = ExampleModel.make()
  let opts = try options(pipeline)
  let f = try #require(m.function(named: "block.0"))
  let names = linearNames(f)
  // safe: in every case
  let iters = Int(pipeline.split(separator: "iters=")[1].prefix { $0.isNumber })!
  // safe: in every case
  let lr = Float(pipeline.split(separator: "lr=")[1].prefix { $0.isNumber || $0 == "." })!
  let useBest = !pipeline.contains("no-use-best")
  func makeLinears() throws -> [any TunableLinear] {
    try names.map { name in
      let w = try #require(m.weights.dense(name))
      let (r, c, v) = (w.shape[0], w.shape[1], w.floats())
      if nvfp4 {
        return SignRoundNVFP4(
          name: name, weights: v, rows: r, cols: c, globalScale: SignRoundNVFP4.globalScale(of: v))
      }
      return SignRoundLinear(
        name: name, weights: v, rows: r, cols: c, scheme: opts.scheme(columns: c))
    }
  }
  var rng = SplitMix64(seed: 13)
  let (n, t) = (5, 16)
  let probe = try BlockExecutor(function: f, module: m)
  let d = probe.hiddenWidth
  let x = (0..<(n * t * d)).map { _ in Float(rng.normal()) }
  let y = (0..<(n * t * d)).map { _ in Float(rng.normal()) * 0.5 }

  // The pass's way.
  let mine = try makeLinears()
  let exec = try BlockExecutor(function: f, module: m, streaming: Set(names))
  exec.trainable = Set(names)
  let report = try AutoRoundRun(module: m, options: opts).tune(
    exec, mine, x: .from(x, tokens: t, width: d), y: .from(y, tokens: t, width: d), block: 3)

  // The plain loop.
  let plain = try makeLinears()
  let ref = try BlockExecutor(function: f, module: m)
  ref.trainable = Set(names)
  let batch = 2, per = t * d
  var sampler = Sampler(count: n, batch: batch, seed: 42 &* 0x1_0000_0001 &+ 3)
  var best = Double.infinity, first = 0.0, bestIter = 0
  var snapshot = plain.map(\.parameters)
  for it in 0..<iters {
    let idx = sampler.next()
    var xb: [Float] = [], yb: [Float] = []
    for i in idx {
      xb += x[(i * per)..<((i + 1) * per)]
      yb += y[(i * per)..<((i + 1) * per)]
    }
    for l in plain { l.qdq(into: ref.weightPointer(l.name)!) }  // safe: held block weights
    let out = ref.forward(xb, samples: batch, tokens: t)
    let count = batch * per
    var dy = [Float](repeating: 0, count: count)
    let k = 2 / Float(count)
    var acc: Float = 0
    var chunkSum = 0.0
    for i in 0..<count {
      let e = out[i] - yb[i]
      acc += e * e
      dy[i] = k * e
      if i & 4095 == 4095 { chunkSum += Double(acc); acc = 0 }
    }
    let loss = (chunkSum + Double(acc)) / Double(count)
    if it == 0 { first = loss }
    if loss < best {
      best = loss
      bestIter = it
      snapshot = plain.map(\.parameters)
    }
    let grads = ref.backward(dy)
    let factor = 1 - Float(it) / Float(iters)
    for l in plain {
      var dv = [Float](repeating: 0, count: l.rows * l.cols)
      var da = [Float](repeating: 0, count: l.rows * l.groupsPerRow)
      var db = da
      l.backward(dw: grads[l.name]!, dv: &dv, dAlpha: &da, dBeta: &db)  // safe: trainable
      l.step(
        dv: dv, dAlpha: da, dBeta: db, lr: lr * factor, minmaxLR: lr * factor, tuneMinmax: true)
    }
  }
  if useBest {
    for (l, s) in zip(plain, snapshot) { l.parameters = s }
  } else {
    bestIter = iters - 1
  }
  #expect(report.firstLoss.bitPattern == first.bitPattern)
  #expect(report.bestLoss.bitPattern == best.bitPattern)
  #expect(report.bestIteration == bestIter)
  if middle { #expect(bestIter > 0 && bestIter < iters - 1, "\(pipeline): best \(bestIter)") }
  for (a, b) in zip(mine, plain) {
    let (qa, qb) = (a.finalize(), b.finalize())
    #expect(qa.codes.bytes == qb.codes.bytes, "\(pipeline) \(a.name) codes")
    #expect(qa.scale.bytes == qb.scale.bytes, "\(pipeline) \(a.name) scales")
    #expect(qa.zeroPoint?.bytes == qb.zeroPoint?.bytes)
    // The quantized forward after tuning (the next block's inputs) reads the same weights.
    var wa = [Float](repeating: 0, count: a.rows * a.cols)
    var wb = [Float](repeating: 1, count: a.rows * a.cols)
    wa.withUnsafeMutableBufferPointer { a.qdq(into: $0.baseAddress!) }  // safe: non-empty
    wb.withUnsafeMutableBufferPointer { b.qdq(into: $0.baseAddress!) }  // safe: non-empty
    #expect(wa.map(\.bitPattern) == wb.map(\.bitPattern), "\(pipeline) \(a.name) qdq")
  }
}

/// `saveBest` keeps codes, not V (half a byte a weight at ≤ 4 bits with an even row, a byte
/// otherwise, plus α and β), and `restoreBest` after further steps gives the codes, scales and
/// `qdq` values of the saved parameters bit for bit, as restoring a copy of V would.
@Test(arguments: [
  (4, false, 64, "int4 asym"), (3, true, 64, "int3 sym"), (8, true, 64, "int8 sym"),
  (4, true, 45, "int4 sym, odd row"), (4, true, 64, "nvfp4"),
])
func saveBestKeepsCodes(_ bits: Int, _ sym: Bool, _ cols: Int, _ label: String) throws {
  var rng = SplitMix64(seed: 21)
  let rows = 5
  let w = (0..<(rows * cols)).map { _ in Float(rng.normal() * 0.05) }
  let gran: Granularity = cols % 16 == 0 ? .group(16) : .channel
  func make() -> any TunableLinear {
    if label == "nvfp4" {
      return SignRoundNVFP4(
        name: "w", weights: w, rows: rows, cols: cols,
        globalScale: SignRoundNVFP4.globalScale(of: w))
    }
    return SignRoundLinear(
      name: "w", weights: w, rows: rows, cols: cols,
      scheme: IntScheme(bits: bits, symmetric: sym, granularity: gran, scaleType: .f16))
  }
  let (kept, copied) = (make(), make())
  var out = [Float](repeating: 0, count: rows * cols)
  func steps(_ ls: [any TunableLinear], _ n: Int, seed: UInt64) {
    var g = SplitMix64(seed: seed)
    for _ in 0..<n {
      let dw = (0..<(rows * cols)).map { _ in Float(g.normal()) }
      for l in ls {
        out.withUnsafeMutableBufferPointer { l.qdq(into: $0.baseAddress!) }  // safe: non-empty
        var dv = [Float](repeating: 0, count: rows * cols)
        var da = [Float](repeating: 0, count: rows * l.groupsPerRow)
        var db = da
        l.backward(dw: dw, dv: &dv, dAlpha: &da, dBeta: &db)
        l.step(dv: dv, dAlpha: da, dBeta: db, lr: 0.3, minmaxLR: 0.05, tuneMinmax: true)
      }
    }
  }
  steps([kept, copied], 3, seed: 4)
  for l in [kept, copied] {
    out.withUnsafeMutableBufferPointer { l.qdq(into: $0.baseAddress!) }  // safe: non-empty
  }
  #expect(kept.bestBytes == 0)
  kept.saveBest()
  let groups = rows * kept.groupsPerRow
  let codeBytes = bits <= 4 && cols % 2 == 0 ? (rows * cols + 1) / 2 : rows * cols
  #expect(kept.bestBytes == codeBytes + 8 * groups, "\(label)")
  #expect(kept.bestBytes < 4 * rows * cols / 2, "\(label): less than half of V")
  steps([kept, copied], 2, seed: 9)
  kept.saveBest()  // a later best overwrites the kept codes
  let copy2 = copied.parameters
  #expect(kept.bestBytes == codeBytes + 8 * groups)
  steps([kept, copied], 2, seed: 11)
  kept.restoreBest()
  copied.parameters = copy2
  #expect(kept.parameters.v.isEmpty && kept.bestBytes == 0, "\(label): V released")
  let (qa, qb) = (kept.finalize(), copied.finalize())
  #expect(qa.codes.bytes == qb.codes.bytes, "\(label) codes")
  #expect(qa.scale.bytes == qb.scale.bytes, "\(label) scales")
  #expect(qa.zeroPoint?.bytes == qb.zeroPoint?.bytes, "\(label) zero points")
  var wa = [Float](repeating: 0, count: rows * cols)
  var wb = [Float](repeating: 1, count: rows * cols)
  wa.withUnsafeMutableBufferPointer { kept.qdq(into: $0.baseAddress!) }  // safe: non-empty
  wb.withUnsafeMutableBufferPointer { copied.qdq(into: $0.baseAddress!) }  // safe: non-empty
  #expect(wa.map(\.bitPattern) == wb.map(\.bitPattern), "\(label) qdq")
}

/// Packed codes read back as stored: nibbles sign-extended, bytes whole, odd counts.
@Test func packedCodesRoundTrip() {
  for (nibbles, count) in [(true, 9), (true, 10), (false, 7)] {
    var p = PackedCodes(count: count, nibbles: nibbles)
    let codes: [Int8] = (0..<count).map {
      nibbles ? Int8($0 % 16) - 8 : Int8(truncatingIfNeeded: $0 * 37 - 128)
    }
    // safe: non-empty
    codes.withUnsafeBufferPointer { p.store($0.baseAddress!, count: count, at: 0) }
    var back = [Int8](repeating: 0, count: count)
    // safe: non-empty
    back.withUnsafeMutableBufferPointer { p.load(into: $0.baseAddress!, count: count, at: 0) }
    #expect(back == codes)
    #expect(p.byteCount == (nibbles ? (count + 1) / 2 : count))
  }
}

/// The checkpoint's model fingerprint of a bf16 weight converted on use is that of the same
/// values held as f32, and computing it leaves the weight undecoded (not 4 bytes a weight).
@Test func modelFingerprintDecodesBF16ByChunks() throws {
  var rng = SplitMix64(seed: 2)
  let name = "model.layers.0.mlp.down_proj.weight"
  let a = ExampleModel.make(), b = ExampleModel.make()
  let shape = try #require(a.weights.dense(name)).shape
  let raw = (0..<shape.reduce(1, *)).map { _ in
    UInt16(Float(rng.normal() * 0.05).bitPattern >> 16)
  }
  let bf16 = TensorData(dtype: .bf16, shape: shape, bytes: raw.withUnsafeBytes { Array($0) })
  a.weights.set(name, .dense(TensorData(floats: bf16.floats(), shape: shape)))
  let deferred = TensorData(f32Decoding: bf16)
  b.weights.set(name, .dense(deferred))
  let opts = try options("autoround<iters=1>")
  let fa = AutoRoundRun(module: a, options: opts).modelFingerprint()
  #expect(AutoRoundRun(module: b, options: opts).modelFingerprint() == fa)
  #expect(deferred.isDeferred)
}
