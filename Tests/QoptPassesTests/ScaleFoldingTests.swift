import QoptIR
import QoptPasses
import QoptRuntime
import QoptTestSupport
import Testing

private func run(_ pipeline: String, on m: Module) throws {
  try PassManager(threads: 1) { _ in }.run(
    PipelineParser.parse(pipeline, registry: .builtin()), on: m)
}

private let ids: [Int32] = (0..<24).map { Int32(($0 * 37 + 11) % 256) }

/// Largest |a − b| relative to the largest |b|.
private func relativeDifference(_ a: [Float], _ b: [Float]) -> Float {
  let scale = b.map(abs).max() ?? 1
  return zip(a, b).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
}

/// The example model with as many KV heads as heads, so v → o is a fold site too.
private func fullHeadModel() -> Module {
  var c = ExampleModel.Config()
  c.kvHeads = c.heads
  return ExampleModel.make(c)
}

/// Folding alone (SmoothQuant's, AWQ's without clipping) leaves the float model's logits equal
/// within 1e-5, and the norm weights and linears show what was moved.
@Test(arguments: [
  ("smoothquant", false), ("smoothquant<alpha=0.8>", true),
  ("awq<bits=4;group-size=16;no-clip;search-samples=2>", false),
  ("awq<bits=4;group-size=16;no-clip;search-samples=2>", true),
])
func foldingLeavesTheFloatModelUnchanged(pass: String, fullHeads: Bool) throws {
  let m = fullHeads ? fullHeadModel() : ExampleModel.make()
  let before = try Interpreter(module: m).run(ids: ids).data
  let gammaBefore = try #require(m.weights.dense("model.layers.0.input_layernorm.weight")).floats()
  try run("calibrate<samples=4;seqlen=32>,\(pass)", on: m)
  let after = try Interpreter(module: m).run(ids: ids).data
  #expect(relativeDifference(after, before) < 1e-5)
  let gammaAfter = try #require(m.weights.dense("model.layers.0.input_layernorm.weight")).floats()
  let attribute = pass.hasPrefix("awq") ? "awq_alpha" : "smoothquant_alpha"
  let marked = m.allOps.filter { $0.kind == .linear && $0.attributes[attribute] != nil }
  if pass.hasPrefix("smoothquant") {
    #expect(gammaAfter != gammaBefore)
    #expect(marked.count == 10)  // q, k, v, gate, up in each of the two blocks
  } else {
    // q/k/v, gate/up, down (after up), and o (after v) only without grouped KV heads.
    #expect(marked.count == (fullHeads ? 14 : 12))
  }
  #expect(m.weights.names.allSatisfy { m.weights.quantized($0) == nil })
}

/// The W8A8 pipeline of the issue runs and leaves int8 per-channel weights.
@Test func smoothQuantComposesWithW8A8() throws {
  let m = ExampleModel.make()
  try run(
    "calibrate<samples=4;seqlen=32>,smoothquant,rtn<bits=8;group-size=-1>,quantize-activations",
    on: m)
  let q = try #require(m.weights.quantized("model.layers.0.mlp.up_proj.weight"))
  #expect(
    q.scheme == .int(IntScheme(bits: 8, symmetric: true, granularity: .channel, scaleType: .f16)))
}

/// AWQ composes with each quantizing pass (rtn, gptq, autoround), which reads the calibration
/// AWQ keeps.
@Test(arguments: [
  "awq<bits=4;group-size=16;search-samples=2>,rtn<bits=4;group-size=16>",
  "awq<bits=4;group-size=16;search-samples=2>,gptq<bits=4;group-size=16>",
  "awq<bits=4;group-size=16;search-samples=2>,autoround<iters=2;group-size=16>",
])
func awqComposesWithAQuantizingPass(pipeline: String) throws {
  let m = ExampleModel.make()
  try run("calibrate<samples=4;seqlen=32>,\(pipeline)", on: m)
  #expect(m.weights.names.filter { m.weights.quantized($0) != nil }.count == 14)
}

/// Without calibration data the passes say what to put before them.
@Test(arguments: ["awq", "smoothquant"])
func foldingPassesNeedCalibration(pass: String) {
  #expect {
    try run(pass, on: ExampleModel.make())
  } throws: { "\($0)".contains("calibrate") }
}
