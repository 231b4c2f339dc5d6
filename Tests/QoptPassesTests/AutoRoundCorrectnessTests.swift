import QoptIR
import QoptPasses
import QoptRuntime
import QoptTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

// MARK: - NVFP4: autoround<iters=0> is rtn<scheme=nvfp4> (issue #15)

/// Weights as a Q4_1 GGUF decodes them (`d · q + m` per block of 32, q in 0…15, d and m
/// f16): on such a lattice w / step often lands exactly on an E2M1 rounding tie, where
/// `w · (1/step)` and `w / step` round apart. With `special`, the first row also holds the
/// groups where the formulas part otherwise: a group whose scale rounds to 0 (tiny negative
/// weights keep their −0 code), an all-zero group and negative zeros.
private func nvfp4Weights(rows: Int, cols: Int, seed: UInt64, special: Bool) -> [Float] {
  var rng = SplitMix64(seed: seed)
  var w = [Float](repeating: 0, count: rows * cols)
  for b in stride(from: 0, to: rows * cols, by: 32) {
    let d = roundFloat(Float(abs(rng.normal())) * 0.004 + 1e-4, to: .f16)
    let m = roundFloat(-8 * d + Float(rng.normal()) * 0.002, to: .f16)
    for i in b..<(b + 32) { w[i] = d * Float(rng.next() % 16) + m }
  }
  guard special else { return w }
  for i in 0..<16 { w[i] = -1e-12 * Float(i + 1) }
  for i in 16..<32 { w[i] = 0 }
  for i in 32..<40 { w[i] = -0.0 }
  return w
}

/// With V = 0 and α = 1 the SignRound NVFP4 state quantizes exactly as `rtn<scheme=nvfp4>`:
/// same codes, group scales and global scale, and its forward is the dequantized RTN weight.
@Test(arguments: [(UInt64(1), false), (2, false), (3, false), (4, true)])
func nvfp4SignRoundStartIsRTN(_ seed: UInt64, _ special: Bool) {
  let (rows, cols) = (256, 512)
  let w = nvfp4Weights(rows: rows, cols: cols, seed: seed, special: special)
  let gs = SignRoundNVFP4.globalScale(of: w)
  let l = SignRoundNVFP4(name: "w", weights: w, rows: rows, cols: cols, globalScale: gs)
  let a = l.finalize()
  let b = w.withUnsafeBufferPointer { NVFP4Quantizer.quantize($0, rows: rows, cols: cols) }
  let differing = zip(a.codes.bytes, b.codes.bytes).filter { $0 != $1 }.count
  #expect(differing == 0, "\(differing) of \(rows * cols) codes differ")
  #expect(a.scale.bytes == b.scale.bytes)
  #expect(a.globalScale?.floats() == b.globalScale?.floats())
  var qdq = [Float](repeating: 0, count: rows * cols)
  qdq.withUnsafeMutableBufferPointer { l.qdq(into: $0.baseAddress!) }
  let apart = zip(qdq, b.dequantized()).filter { $0 != $1 }.count
  #expect(apart == 0, "the tuning forward differs from the runtime's dequantization in \(apart) weights")
}

// MARK: - Scale threshold (autoround.md §3: 1e-5, 1e-8 for f32 scales)

/// A group whose largest magnitude is 2e-7 has the full-range scale 2.5e-8 with f32 scales
/// (above auto-round's f32 threshold 1e-8, so kept), not the f16 threshold 1e-5; in f16 it is
/// clamped to 1e-5. Same for SignRound's scale, symmetric and asymmetric.
@Test(arguments: [true, false])
func scaleThresholdFollowsScaleDType(_ symmetric: Bool) throws {
  let w: [Float] = [1e-7, -2e-7, 0.5e-7, 0, 1.5e-7, -1e-7, 0.25e-7, 2e-8]
  let expected: Float = symmetric ? 2e-7 / 8 : 3.5e-7 / 15
  for st in [DType.f32, .f16] {
    let scheme = IntScheme(bits: 4, symmetric: symmetric, granularity: .group(8), scaleType: st)
    let rtn = w.withUnsafeBufferPointer { IntQuantizer(scheme: scheme, rule: .fullRange).quantize($0, rows: 1, cols: 8) }
    let ar = SignRoundLinear(name: "w", weights: w, rows: 1, cols: 8, scheme: scheme).finalize()
    for (what, q) in [("rtn", rtn), ("autoround", ar)] {
      let s = abs(try #require(q.scale.floats().first))
      if st == .f32 {
        #expect(abs(s - expected) <= expected * 1e-6, "\(what) f32 scale \(s), expected \(expected)")
        // The codes then resolve the group: dequantized within half a step.
        let d = q.dequantized()
        #expect(zip(d, w).allSatisfy { abs($0 - $1) <= s * 0.5 + 1e-12 }, "\(what): \(d)")
      } else {
        #expect(s == roundFloat(1e-5, to: .f16), "\(what) f16 scale \(s)")
      }
    }
  }
  // Below the f32 threshold the scale is clamped to 1e-8 (not 1e-5).
  let tiny = w.map { $0 * 1e-3 }
  let scheme = IntScheme(bits: 4, symmetric: symmetric, granularity: .group(8), scaleType: .f32)
  let q = tiny.withUnsafeBufferPointer { IntQuantizer(scheme: scheme, rule: .fullRange).quantize($0, rows: 1, cols: 8) }
  #expect(abs(try #require(q.scale.floats().first)) == Float(1e-8))
}

// MARK: - Activation quantization while tuning

/// Four windows of 16 byte-token ids, as a `.json` calibration file in `dir`.
private func calibrationWindows(in dir: String) throws -> (path: String, windows: [[Int32]]) {
  var rng = SplitMix64(seed: 77)
  let windows = (0..<4).map { _ in (0..<16).map { _ in Int32(rng.next() % 256) } }
  let path = dir + "/calib.json"
  let text = "[" + windows.map { "[" + $0.map(String.init).joined(separator: ",") + "]" }.joined(separator: ",") + "]"
  let w = try AtomicFileWriter(path: path)
  try w.write(text)
  try w.commit()
  return (path, windows)
}

/// The first block's inputs: the embedding rows of each window.
private func embedded(_ m: Module, _ windows: [[Int32]]) throws -> [Tensor] {
  let table = try #require(m.weights.dense("model.embed_tokens.weight")).floats()
  let d = 64
  return windows.map { w in Tensor(shape: [w.count, d], data: w.flatMap { table[Int($0) * d..<(Int($0) + 1) * d] }) }
}

/// Mean squared difference between `@block.N` of `quantized` (run by the runtime, with its
/// input quantization) and of `float`, over `inputs`.
private func runtimeBlockError(_ quantized: Module, _ float: Module, block: Int, inputs: [Tensor]) throws -> Double {
  let iq = Interpreter(module: quantized), fl = Interpreter(module: float)
  var sum = 0.0, count = 0
  for x in inputs {
    guard case .tensor(let a) = try iq.call("block.\(block)", [.tensor(x)]), case .tensor(let b) = try fl.call("block.\(block)", [.tensor(x)]) else {
      Issue.record("block did not return a tensor")
      return .nan
    }
    for (p, q) in zip(a.data, b.data) { sum += Double(p - q) * Double(p - q) }
    count += a.data.count
  }
  return sum / Double(count)
}

/// The per-block best losses autoround recorded in its checkpoint state.
private func checkpointLosses(_ dir: String) throws -> [Double] {
  let text = String(decoding: try readFile(dir + "/state.txt"), as: UTF8.self)
  return text.split(separator: "\n").filter { $0.hasPrefix("block ") }.compactMap { Double($0.split(separator: " ")[3]) }
}

private func run(_ pipeline: String, on m: Module) throws {
  try PassManager(threads: 1) { _ in }.run(PipelineParser.parse(pipeline, registry: .builtin()), on: m)
}

/// With `quantize-activations` before `autoround`, tuning runs each block with its inputs
/// fake-quantized as the runtime does: the block loss autoround reports (batch = all samples, so
/// the best iteration's loss is the final weights' loss) is the runtime's output error of the
/// block with quantized weights and activations, and the result differs from (and is no worse
/// under the quantized runtime than) tuning that ignores the activation quantization.
@Test func autoRoundTunesWithQuantizedActivations() throws {
  let dir = TinyCheckpoints.scratchDirectory("ar-actq")
  defer { TinyCheckpoints.removeTree(dir) }
  let (calib, windows) = try calibrationWindows(in: dir)
  let tuneOptions = "iters=40;group-size=32;batch-size=4"
  let aware = ExampleModel.make()
  try run("calibrate<data=\(calib);samples=4;seqlen=16>,quantize-activations<type=nvfp4>,autoround<\(tuneOptions);checkpoint-dir=\(dir)/ck>", on: aware)
  let float = ExampleModel.make()
  let inputs = try embedded(float, windows)
  let reported = try #require(try checkpointLosses(dir + "/ck").first)
  let measured = try runtimeBlockError(aware, float, block: 0, inputs: inputs)
  #expect(abs(reported - measured) <= 1e-3 * measured, "autoround's block loss \(reported), runtime error \(measured)")

  // The same tuning blind to the activation quantization, given the same input quantization after.
  let blind = ExampleModel.make()
  try run("calibrate<data=\(calib);samples=4;seqlen=16>,autoround<\(tuneOptions)>", on: blind)
  for (fa, fb) in zip(aware.functions, blind.functions) {
    for (a, b) in zip(fa.body, fb.body) where a.kind == .linear {
      for k in InputQuantization.keys { b.attributes[k] = a.attributes[k] }
    }
  }
  let blindError = try runtimeBlockError(blind, float, block: 0, inputs: inputs)
  let name = "model.layers.0.self_attn.q_proj.weight"
  #expect(aware.weights.quantized(name)?.codes.bytes != blind.weights.quantized(name)?.codes.bytes)
  #expect(measured <= blindError, "act-quant-aware tuning \(measured), blind \(blindError)")
}

/// Static input scales come from the inputs tuning sees (the quantized block's outputs), not
/// from the float model's calibration: block 1's q_proj scale is amax(rms_norm(block 0's
/// quantized runtime output)) / 127.5.
@Test func autoRoundTakesStaticInputScalesFromTheQuantizedPath() throws {
  let dir = TinyCheckpoints.scratchDirectory("ar-actq-static")
  defer { TinyCheckpoints.removeTree(dir) }
  let (calib, windows) = try calibrationWindows(in: dir)
  let prefix = "calibrate<data=\(calib);samples=4;seqlen=16>,quantize-activations<type=int8;mode=static;strategy=tensor>"
  let tuned = ExampleModel.make(), calibrated = ExampleModel.make()
  try run(prefix + ",autoround<iters=5;group-size=32;batch-size=4>", on: tuned)
  try run(prefix, on: calibrated)
  func qProj(_ m: Module) throws -> Op {
    try #require(m.function(named: "block.1")?.body.first { $0.kind == .linear && $0.operands[1].definingOp?.paramName == "model.layers.1.self_attn.q_proj.weight" })
  }
  let got = try #require(try qProj(tuned).inputQuantization?.scale)
  let floatPath = try #require(try qProj(calibrated).inputQuantization?.scale)

  let interp = Interpreter(module: tuned)
  let ln = try #require(tuned.weights.dense("model.layers.1.input_layernorm.weight")).floats()
  var amax: Float = 0
  for x in try embedded(ExampleModel.make(), windows) {
    guard case .tensor(let h) = try interp.call("block.0", [.tensor(x)]) else { Issue.record("no tensor"); return }
    var normed = [Float](repeating: 0, count: h.data.count)
    h.data.withUnsafeBufferPointer { hp in
      ln.withUnsafeBufferPointer { wp in
        normed.withUnsafeMutableBufferPointer { op in
          Kernels.rmsNorm(hp.baseAddress!, rows: h.data.count / 64, columns: 64, weight: wp.baseAddress!, eps: 1e-5, into: op.baseAddress!)
        }
      }
    }
    amax = max(amax, normed.map(abs).max() ?? 0)
  }
  let expected = amax / 127.5
  #expect(abs(got - expected) <= 1e-4 * expected, "input_scale \(got), expected \(expected) from the quantized path")
  #expect(abs(got - floatPath) > 1e-3 * floatPath, "input_scale \(got) is still the float path's \(floatPath)")
}

// MARK: - Memory budget

/// Stores sharing one budget keep at most its bytes in memory together, spill the rest, read
/// every sample back unchanged, and give their bytes back when released.
@Test func activationStoresShareOneBudget() throws {
  let budget = MemoryBudget(bytes: 3 * 12 * 4)
  let samples = (0..<4).map { s in (0..<12).map { Float(s * 100 + $0) } }
  do {
    let a = ActivationStore(tokens: 3, width: 4, budget: budget)
    let b = ActivationStore(tokens: 3, width: 4, budget: budget)
    for s in samples { try s.withUnsafeBufferPointer { try a.append($0.baseAddress!) } }
    try samples.flatMap { $0 }.withUnsafeBufferPointer { try b.append($0.baseAddress!, samples: 4) }
    #expect(a.spilled == 1 && b.spilled == 4 && budget.used == 3 * 12 * 4)
    #expect(try a.all() == samples.flatMap { $0 } && b.all() == samples.flatMap { $0 })
    var one = [Float](repeating: 0, count: 24)
    try one.withUnsafeMutableBufferPointer { try b.read([3, 0], into: $0.baseAddress!) }
    #expect(one == samples[3] + samples[0])
  }
  #expect(budget.used == 0)
}

/// calibrate + autoround (with activation quantization and a checkpoint) give the same bytes
/// whether every cached activation spills (`memory-budget=0`) or none does, and a run resumed
/// from that checkpoint (its activations streamed back from disk) ends the same.
@Test func autoRoundResultsDoNotDependOnTheMemoryBudget() throws {
  let dir = TinyCheckpoints.scratchDirectory("ar-budget")
  defer { TinyCheckpoints.removeTree(dir) }
  func tuned(_ budget: Int, checkpoint: String? = nil) throws -> Module {
    let m = ExampleModel.make()
    let ck = checkpoint.map { ";checkpoint-dir=\($0)" } ?? ""
    try run(
      "calibrate<samples=6;seqlen=16;memory-budget=\(budget)>,quantize-activations<type=int8;mode=static;strategy=tensor>,autoround<iters=3;group-size=32;batch-size=4\(ck)>",
      on: m)
    return m
  }
  let spilled = try tuned(0, checkpoint: dir + "/ck"), inMemory = try tuned(1024)
  let resumed = try tuned(0, checkpoint: dir + "/ck")
  #expect(Printer().print(spilled) == Printer().print(inMemory))
  #expect(Printer().print(resumed) == Printer().print(inMemory))
  for name in inMemory.weights.names {
    guard let q = inMemory.weights.quantized(name) else { continue }
    #expect(spilled.weights.quantized(name)?.codes.bytes == q.codes.bytes, "\(name)")
    #expect(resumed.weights.quantized(name)?.codes.bytes == q.codes.bytes, "\(name)")
    #expect(resumed.weights.quantized(name)?.scale.bytes == q.scale.bytes, "\(name)")
  }
}
