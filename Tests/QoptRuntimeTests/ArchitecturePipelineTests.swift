import QoptBackends
import QoptFormats
import QoptFrontends
import QoptIR
import QoptPasses
import QoptRuntime
import QoptTestSupport
import Testing

// The quantization pipelines on every family fixture, and the compressed-tensors round trip:
// HF directory → qopt → compressed-tensors (Hub names, per-expert tensors, routers in
// `ignore`) → import gives the same quantized IR.

private func run(_ pipeline: String, on m: Module) throws {
  try PassManager(threads: 1) { _ in }.run(
    PipelineParser.parse(pipeline, registry: .builtin()), on: m)
}

/// Params by weight name with their printed types, and every weight's stored parts.
private func quantizedIR(_ m: Module) -> [String: String] {
  var out: [String: String] = [:]
  for op in m.allOps {
    if let n = op.paramName, let r = op.result { out[n] = Printer.type(r.type) }
  }
  return out
}

@Suite(.serialized) struct ArchitecturePipelineTests {
  @Test(arguments: ArchitectureLogitsTests.families)
  func pipelinesRunOnEveryFamily(_ family: String) throws {
    for pipeline in [
      "calibrate<samples=4;seqlen=32>,autoround<iters=20>", "rtn<scheme=nvfp4>,fuse-scales",
    ] {
      let m = try ModelImporter.load(path: archFixtures + "/" + family)
      try run(pipeline + ",verify", on: m)
      let quantized = m.allOps.filter { op in
        op.paramName.map { m.weights.quantized($0) != nil } ?? false
      }
      #expect(!quantized.isEmpty, "\(family) \(pipeline): nothing quantized")
      // Routers stay float by default; every quantized weight is finite.
      for op in m.allOps where op.kind == .moeRoute {
        let router = try #require(op.operands[0].definingOp?.operands[1].definingOp?.paramName)
        #expect(m.weights.quantized(router) == nil, "\(family): router \(router) was quantized")
      }
      let logits = try Interpreter(module: m).run(ids: Array(0..<24))
      #expect(logits.data.allSatisfy { $0.isFinite }, "\(family) \(pipeline): non-finite logits")
    }
  }

  /// GPTQ, AWQ, weighted RTN and SmoothQuant find their linears and fold sites by dataflow, so
  /// they run on every family's IR (fused projections, q/k norms, (1+w) norms, experts); the
  /// float model folded by AWQ (without its clipping) or SmoothQuant alone keeps its logits.
  @Test(arguments: ArchitectureLogitsTests.families)
  func activationAwarePassesRunOnEveryFamily(_ family: String) throws {
    let calib = "calibrate<samples=4;seqlen=32>"
    let ids: [Int32] = Array(0..<24)
    let float = try Interpreter(module: ModelImporter.load(path: archFixtures + "/" + family))
      .run(ids: ids)
    for fold in ["awq<bits=4;group-size=16;sym;no-clip>", "smoothquant"] {
      let m = try ModelImporter.load(path: archFixtures + "/" + family)
      try run("\(calib),\(fold),verify", on: m)
      let folded = try Interpreter(module: m).run(ids: ids)
      var worst: Float = 0
      for (a, b) in zip(folded.data, float.data) { worst = max(worst, abs(a - b)) }
      #expect(worst <= 1e-4, "\(family) \(fold): folding moved the logits by \(worst)")
    }
    for pipeline in [
      "\(calib),gptq<bits=4;group-size=16;sym>",
      "\(calib),awq<bits=4;group-size=16;sym>,gptq<bits=4;group-size=16;sym>",
      "\(calib),rtn<bits=4;group-size=16;sym;weighted>",
      "\(calib),smoothquant,rtn<bits=8;group-size=-1>,quantize-activations",
    ] {
      let m = try ModelImporter.load(path: archFixtures + "/" + family)
      try run(pipeline + ",verify", on: m)
      for (name, _) in m.moeExpertLinears() {
        let q = try #require(m.weights.quantized(name), "\(family) \(pipeline): \(name) left float")
        #expect(q.dequantized().allSatisfy { $0.isFinite }, "\(name) has non-finite values")
      }
      let logits = try Interpreter(module: m).run(ids: ids)
      #expect(logits.data.allSatisfy { $0.isFinite }, "\(family) \(pipeline): non-finite logits")
    }
  }

  /// Two tokens reach at most four of qwen3_moe's eight experts per layer: the others are
  /// quantized (RTN), finite, and the run still tunes the rest.
  @Test func idleExpertsAreQuantized() throws {
    let m = try ModelImporter.load(path: archFixtures + "/qwen3_moe")
    try run("calibrate<samples=1;seqlen=2>,autoround<iters=4>", on: m)
    let g = try ModelImporter.load(path: archFixtures + "/qwen3_moe")
    try run("calibrate<samples=1;seqlen=2>,gptq<bits=4;group-size=16;sym>", on: g)
    for (name, _) in g.moeExpertLinears() {
      let q = try #require(g.weights.quantized(name), "gptq left \(name) float")
      #expect(q.dequantized().contains { $0 != 0 }, "gptq zeroed \(name)")
    }
    for (name, _) in m.moeExpertLinears() {
      let q = try #require(m.weights.quantized(name), "\(name) left float")
      #expect(q.dequantized().allSatisfy { $0.isFinite }, "\(name) has non-finite values")
    }
  }

  @Test(arguments: ArchitectureLogitsTests.families)
  func compressedTensorsRoundTrip(_ family: String) throws {
    let m = try ModelImporter.load(path: archFixtures + "/" + family)
    try run("rtn", on: m)
    let dir = TestTemporary.makeDirectory("arch-ct-\(family)")
    defer { TestTemporary.remove(dir) }
    try CompressedTensorsEmitter().emit(m, to: dir + "/out")
    let config = try JSON.parse(try readFile(dir + "/out/config.json"))
    #expect(config["model_type"]?.stringValue == m.attributes["model_type"]?.stringValue)
    let ignore =
      config["quantization_config"]?["ignore"]?.arrayValue?.compactMap(\.stringValue) ?? []
    let routers = ignore.filter { $0.hasSuffix(".gate") }
    #expect(
      routers.count == (family == "qwen3_moe" || family == "mixtral" ? 2 : 0), "ignore: \(ignore)")
    let back = try ModelImporter.load(path: dir + "/out")
    try back.verify()
    #expect(quantizedIR(back) == quantizedIR(m))
    for (name, type) in quantizedIR(m) where type.contains("!q.") {
      let a = try #require(m.weights.quantized(name)),
        b = try #require(back.weights.quantized(name))
      #expect(a.dequantized() == b.dequantized(), "\(name) differs after the round trip")
    }
    let x: [Int32] = Array(0..<24)
    let (after, before) = (
      try Interpreter(module: back).run(ids: x), try Interpreter(module: m).run(ids: x)
    )
    #expect(after.data == before.data)
  }
}
