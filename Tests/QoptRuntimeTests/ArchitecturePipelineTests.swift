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

  /// Two tokens reach at most four of qwen3_moe's eight experts per layer: the others are
  /// quantized (RTN), finite, and the run still tunes the rest.
  @Test func idleExpertsAreQuantized() throws {
    let m = try ModelImporter.load(path: archFixtures + "/qwen3_moe")
    try run("calibrate<samples=1;seqlen=2>,autoround<iters=4>", on: m)
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
