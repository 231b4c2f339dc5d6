import QoptIR
import QoptPasses
import QoptRuntime
import QoptTestSupport
import Testing

private func sym8(_ symmetric: Bool) -> IntScheme {
  IntScheme(bits: 4, symmetric: symmetric, granularity: .group(8), scaleType: .f32)
}

/// autoround.md §12.2: symmetric qdq with V, β = 0.9, α = 0.8.
@Test func signRoundSymmetricMatchesReference() {
  let l = SignRoundLinear(name: "w", weights: arGroup, rows: 1, cols: 8, scheme: sym8(true))
  l.v = [0, 0.3, -0.4, 0, 0.45, 0, 0.2, -0.2]
  l.beta = [0.9]
  l.alpha = [0.8]
  let q = l.finalize()
  #expect(abs(q.scale.floats()[0] - -0.044) < 1e-7)
  #expect(q.codes.int8s() == [-3, 7, -2, -8, 7, -4, 2, -8])
  #expect(q.zeroPoint == nil)
}

/// autoround.md §12.3–4: asymmetric RTN and with V/α/β; zero points stored shifted by −8 as `rtn` does.
@Test func signRoundAsymmetricMatchesReference() {
  let r = SignRoundLinear(name: "w", weights: arGroup, rows: 1, cols: 8, scheme: sym8(false)).finalize()
  #expect(abs(r.scale.floats()[0] - 0.05) < 1e-7)
  #expect(r.zeroPoint?.int8s() == [6 - 8])
  #expect(r.codes.int8s().map { Int($0) + 8 } == [8, 0, 7, 15, 1, 10, 4, 13])
  let l = SignRoundLinear(name: "w", weights: arGroup, rows: 1, cols: 8, scheme: sym8(false))
  l.v = [0, 0.3, -0.4, 0, 0.45, 0, 0.2, -0.2]
  l.beta = [0.9]
  l.alpha = [0.8]
  let q = l.finalize()
  #expect(abs(q.scale.floats()[0] - 0.0420667) < 1e-6)
  #expect(q.zeroPoint?.int8s() == [7 - 8])
}

/// With V = 0 and α = β = 1 the qdq is bit-identical to `rtn`'s full-range quantizer.
@Test(arguments: [true, false])
func signRoundStartIsRTN(_ symmetric: Bool) {
  var rng = SplitMix64(seed: 3)
  let w = (0..<(6 * 40)).map { _ in Float(rng.normal()) * 0.05 }
  let scheme = IntScheme(bits: 4, symmetric: symmetric, granularity: .group(16), scaleType: .f16)
  let a = SignRoundLinear(name: "w", weights: w, rows: 6, cols: 40, scheme: scheme).finalize()
  let b = w.withUnsafeBufferPointer { IntQuantizer(scheme: scheme, rule: .fullRange).quantize($0, rows: 6, cols: 40) }
  #expect(a.codes.int8s() == b.codes.int8s())
  #expect(a.scale.bytes == b.scale.bytes)
  #expect(a.zeroPoint?.bytes == b.zeroPoint?.bytes)
}

/// ∂L/∂V is the straight-through gradient `dW · scale` inside the clamp range, 0 outside; the
/// α/β gradients match finite differences of the loss through the (differentiable) scale.
@Test func signRoundGradients() {
  let w: [Float] = [0.12, -0.31, 0.05, 0.44, -0.27, 0.18, -0.09, 0.36]
  let l = SignRoundLinear(name: "w", weights: w, rows: 1, cols: 8, scheme: sym8(true))
  var wq = [Float](repeating: 0, count: 8)
  wq.withUnsafeMutableBufferPointer { l.qdq(into: $0.baseAddress!) }
  let dw: [Float] = [1, -2, 0.5, 3, -1, 0.25, 2, -0.5]
  var dv = [Float](repeating: 0, count: 8), da: [Float] = [0], db: [Float] = [0]
  l.backward(dw: dw, dv: &dv, dAlpha: &da, dBeta: &db)
  let s = Float(-0.44) / 8
  #expect(zip(dv, dw).allSatisfy { abs($0 - $1 * s) < 1e-7 })
  // max side (0.44 > 0.31) is selected: β gets no gradient; α's is Σ dW·(q − w/s)·(−1/8)·0.44.
  #expect(db == [0])
  let codes: [Float] = [-2, 6, -1, -8, 5, -3, 2, -7]
  let ds = zip(zip(dw, w), codes).reduce(Float(0)) { $0 + $1.0.0 * ($1.1 - $1.0.1 / s) }
  #expect(abs(da[0] - ds * -0.44 / 8) < 1e-5)
}

/// `autoround<iters=0>` is plain RTN: identical to `rtn<scale-rule=full-range>` with the same
/// bits and group size, and needs no calibration.
@Test func autoRoundWithZeroItersIsRTN() throws {
  let a = ExampleModel.make(), b = ExampleModel.make()
  try PassManager(threads: 1) { _ in }.run(PipelineParser.parse("autoround<iters=0;group-size=32>", registry: .builtin()), on: a)
  try PassManager(threads: 1) { _ in }.run(PipelineParser.parse("rtn<scale-rule=full-range;group-size=32>", registry: .builtin()), on: b)
  #expect(Printer().print(a) == Printer().print(b))
  for name in b.weights.names {
    guard let qb = b.weights.quantized(name) else { continue }
    let qa = try #require(a.weights.quantized(name))
    #expect(qa.codes.bytes == qb.codes.bytes && qa.scale.bytes == qb.scale.bytes, "\(name)")
  }
}

/// autoround without calibrate says what to do.
@Test func autoRoundNeedsCalibration() {
  let m = ExampleModel.make()
  #expect {
    try PassManager(threads: 1) { _ in }.run(PipelineParser.parse("autoround<iters=2>", registry: .builtin()), on: m)
  } throws: { "\($0)".contains("put 'calibrate' before") || (($0 as? PassError)?.message.contains("calibrate") ?? false) }
}

/// Tuning lowers the block loss and writes `rtn`-shaped weights; same seed → same bytes.
@Test func autoRoundTunesTheExampleModelDeterministically() throws {
  func run() throws -> Module {
    let m = ExampleModel.make()
    try PassManager(threads: 1) { _ in }.run(
      PipelineParser.parse("calibrate<samples=8;seqlen=32>,autoround<iters=10;group-size=32>", registry: .builtin()), on: m)
    return m
  }
  let a = try run(), b = try run()
  #expect(a.attributes["calib.samples"] == .int(8))
  #expect(a.attributes["calib.seqlen"] == .int(32))
  for name in a.weights.names {
    guard let qa = a.weights.quantized(name) else { continue }
    let qb = try #require(b.weights.quantized(name))
    #expect(qa.codes.bytes == qb.codes.bytes && qa.scale.bytes == qb.scale.bytes)
  }
  #expect(a.weights.names.filter { a.weights.quantized($0) != nil }.count == 14)
}

/// The block executor's weight gradient matches finite differences of its own forward
/// (directional derivative along a random direction, in f32 with a loose tolerance).
@Test func blockExecutorWeightGradient() throws {
  let m = ExampleModel.make()
  let f = try #require(m.function(named: "block.0"))
  let exec = try BlockExecutor(function: f, module: m)
  let name = "model.layers.0.mlp.gate_proj.weight"
  exec.trainable = [name]
  let (samples, t, d) = (2, 6, exec.hiddenWidth)
  var rng = SplitMix64(seed: 9)
  let x = (0..<(samples * t * d)).map { _ in Float(rng.normal()) }
  let g = (0..<(samples * t * d)).map { _ in Float(rng.normal()) }
  func loss() -> Double {
    let y = exec.forward(x, samples: samples, tokens: t)
    return (0..<g.count).reduce(0.0) { $0 + Double(y[$1]) * Double(g[$1]) }
  }
  _ = loss()
  let grads = exec.backward(g)
  let w = try #require(exec.weightPointer(name))
  let n = 128 * 64
  let dw = Array(UnsafeBufferPointer(start: try #require(grads[name]), count: n))
  let dir = (0..<n).map { _ in Float(rng.normal()) }
  let analytic = zip(dw, dir).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
  let orig = Array(UnsafeBufferPointer(start: w, count: n))
  let h: Float = 1e-3
  for i in 0..<n { w[i] = orig[i] + h * dir[i] }
  let lp = loss()
  for i in 0..<n { w[i] = orig[i] - h * dir[i] }
  let lm = loss()
  for i in 0..<n { w[i] = orig[i] }
  let numeric = (lp - lm) / (2 * Double(h))
  #expect(abs(numeric - analytic) / abs(analytic) < 1e-2, "numeric \(numeric) analytic \(analytic)")
}

/// Evenly spaced windows at offsets i·⌊N/samples⌋ reproduce calib_samples_32x512.json.
@Test func calibrationWindowsMatchTheReferenceSamples() throws {
  let shared = TestPaths.shared + "/data"
  let ids = try JSON.parse(readFile(shared + "/calib.tokens.json")).arrayValue!.map { Int32($0.intValue!) }
  let expected = try JSON.parse(readFile(shared + "/calib_samples_32x512.json")).arrayValue!.map { $0.arrayValue!.map { Int32($0.intValue!) } }
  let windows = try CalibrationText.windows(.flat(ids), samples: 32, seqlen: 512, seed: -1, source: "calib")
  #expect(windows == expected)
  let random = try CalibrationText.windows(.flat(ids), samples: 4, seqlen: 512, seed: 7, source: "calib")
  #expect(random.count == 4 && random.allSatisfy { $0.count == 512 } && random != Array(expected.prefix(4)))
}

/// Samples beyond the memory budget go to a temporary file and read back unchanged.
@Test func activationStoreSpillsBeyondBudget() throws {
  let store = ActivationStore(tokens: 3, width: 4, budgetBytes: 2 * 12 * 4)
  let samples = (0..<5).map { s in (0..<12).map { Float(s * 100 + $0) } }
  for s in samples { try s.withUnsafeBufferPointer { try store.append($0.baseAddress!) } }
  #expect(store.samples == 5 && store.spilled == 3)
  #expect(try store.all() == samples.flatMap { $0 })
}

/// A pipeline whose calibration inputs all spill gives the same result as one in memory.
@Test func autoRoundWithSpilledCalibrationMatches() throws {
  func run(_ budget: Int) throws -> Module {
    let m = ExampleModel.make()
    try PassManager(threads: 1) { _ in }.run(
      PipelineParser.parse("calibrate<samples=4;seqlen=16;memory-budget=\(budget)>,autoround<iters=3;group-size=32>", registry: .builtin()), on: m)
    return m
  }
  let a = try run(0), b = try run(1024)
  for name in a.weights.names {
    guard let qa = a.weights.quantized(name) else { continue }
    #expect(qa.codes.bytes == b.weights.quantized(name)?.codes.bytes)
  }
}
