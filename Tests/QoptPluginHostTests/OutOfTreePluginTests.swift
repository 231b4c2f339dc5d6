import QoptExternKernels
import QoptIR
import QoptPasses
import QoptPluginHost
import Testing

/// The third-party path: a plugin compiled from a directory outside the package with only
/// `-I Sources/CQoptPlugin/include` and `cc -shared -fPIC`, loaded and run through the pass
/// manager. Its passes cover the host table: walking, options, attributes, weight reads and
/// writes, quantized replacement, statistics, diagnostics and op creation.
@Suite(.serialized) struct OutOfTreePluginTests {
  /// Compiled once per process (each test loads the same file into its own registry).
  static let library: Result<String, any Error> = Result { try Fixtures.compilePlugin(PluginSources.outOfTree, name: "demo") }

  static let weights: [Float] = [0.5, -1.0, 0.25, 2.0, -0.75, 1.5, 0.0, -2.5, 1.0, 0.5, -0.5, 0.125, 3.0, -1.25, 0.75, 0.25]

  static let text = """
    module @demo

    func @block.0(%x: tensor<?x8xf32>) -> tensor<?x2xf32> {
      %w = param @"model.layers.0.self_attn.q_proj.weight" : tensor<2x8xf32> = dense<[\(weights.map { "\($0)" }.joined(separator: ", "))]>
      %y = linear %x, %w : (tensor<?x8xf32>, tensor<2x8xf32>) -> tensor<?x2xf32>
      return %y : tensor<?x2xf32>
    }

    """

  private func setUp() throws -> (PassRegistry, Module) {
    let registry = PassRegistry.builtin()
    let loaded = try PluginLoader.load(try Self.library.get(), into: registry)
    #expect(loaded.passes == ["demo-scale", "demo-quant", "demo-rotate", "demo-fail", "demo-abuse", "demo-hostile"])
    #expect(loaded.kernels == ["demo_identity_f32", "demo_axpy2_f32", "demo_fail_f32"])
    return (registry, try Parser.parse(Self.text, file: "demo.ir"))
  }

  private let wName = "model.layers.0.self_attn.q_proj.weight"

  @Test func registersWithItsOptionSchema() throws {
    let (registry, _) = try setUp()
    let rotate = try #require(registry.pass(named: "demo-rotate"))
    #expect(rotate.options.map(\.valueSyntax) == ["demo_identity_f32|demo_missing_f32"])
    #expect(rotate.options.map(\.defaultValue) == ["demo_identity_f32"])
    let scale = try #require(registry.pass(named: "demo-scale"))
    #expect(scale.options.map(\.key) == ["factor", "only", "tag", "steps"])
    #expect(scale.options.map(\.valueSyntax) == ["number in -10.0...10.0", "string", "bool", "int in 1...9"])
    #expect(scale.options.map(\.defaultValue) == ["2.0", "", "true", "3"])
    for bad in ["demo-scale<tag=maybe>", "demo-scale<no-tag=1>", "demo-scale<steps=0>", "demo-scale<steps=x>", "demo-scale<no-factor>"] {
      #expect(throws: PipelineError.self, "\(bad)") { try PipelineParser.parse(bad, registry: registry) }
    }
    #expect(throws: Never.self) { try PipelineParser.parse("demo-scale<no-tag;tag;tag=false;steps=9;factor=-1>", registry: registry) }
    #expect(registry.pass(named: "demo-fail")?.preserves == ["*"])
    #expect(throws: PipelineError.self) { try PipelineParser.parse("demo-rotate<kernel=other>", registry: registry) }
  }

  @Test func readsAndWritesWeightsAndAttributes() throws {
    let (registry, m) = try setUp()
    try Fixtures.runPipeline("demo-scale<factor=0.5;only=\(wName)>", on: m, registry: registry)
    #expect(try #require(m.weights.dense(wName)).floats() == Self.weights.map { $0 * 0.5 })
    #expect(m.text.contains("param @\(wName) {demo.scaled = true} : tensor<2x8xf32>"))
    #expect(m.attributes["demo.note"] == .string("scaled"))
  }

  @Test func replacesAWeightByQuantizedCodes() throws {
    let (registry, m) = try setUp()
    let log = try Fixtures.runPipeline("demo-quant", on: m, registry: registry)
    let q = try #require(m.weights.quantized(wName))
    #expect(q.scheme == .int(IntScheme(bits: 8, symmetric: true, granularity: .channel, scaleType: .f32)))
    let type = m.allOps.first { $0.paramName == wName }?.result?.type
    #expect(type.map(Printer.type) == "tensor<2x8x!q.int<8, sym, channel, scale=f32>>")
    let maxErr = zip(q.dequantized(), Self.weights).map { abs($0 - $1) }.max() ?? 1
    #expect(maxErr <= 3.0 / 127 / 2 + 1e-6)
    // No calibrate in the pipeline: no statistics, and the remark is located at the linear.
    #expect(log.contains("demo.ir:5:3: remark: demo-quant: no calibration statistics; using weights only"))
  }

  @Test func boolOptionsTakeTheNoForm() throws {
    let (registry, m) = try setUp()
    try Fixtures.runPipeline("demo-scale<no-tag>", on: m, registry: registry)
    #expect(!m.text.contains("demo.scaled"))
    #expect(try #require(m.weights.dense(wName)).floats() == Self.weights.map { $0 * 2 })
  }

  @Test func badHandlesAndArgumentsAreRefusedNotFatal() throws {
    let (registry, m) = try setUp()
    let log = try Fixtures.runPipeline("demo-abuse", on: m, registry: registry)
    #expect(m.attributes["demo.refused"] == .int(20))
    #expect(log.contains { $0.contains("warning: demo-abuse: attribute text '[1, ' does not parse") })
    #expect(m.weights.dense(wName) != nil)  // nothing was replaced
  }

  @Test func errorsCarryTheOpLocation() throws {
    let (registry, m) = try setUp()
    var log: [String] = []
    let error = #expect(throws: PassError.self) { log = try Fixtures.runPipeline("demo-fail", on: m, registry: registry) }
    #expect(error?.description == "demo.ir:5:3: error: demo-fail: demo failure on this linear")
    _ = log
  }

  @Test func createsGenericOpsThatRoundTripAndRunThroughLibffi() throws {
    let (registry, m) = try setUp()
    try Fixtures.runPipeline("demo-rotate", on: m, registry: registry)
    let text = m.text
    #expect(text.contains(#"%rot = "qopt.extern"(%x) {operand_types = [tensor<?x8xf32>], result_type = tensor<?x8xf32>, symbol = "demo_identity_f32"} : (tensor<?x8xf32>) -> tensor<?x8xf32>"#))
    #expect(text.contains("%y = linear %rot, %w"))
    #expect(try Parser.parse(text, file: "round.ir").text == text)
    // The runtime's view: find the kernel the plugin registered, check, call.
    let op = try #require(m.allOps.first { $0.name == ExternCall.opName })
    let call = try ExternCall(op: op)
    #expect(call.plugin == (try Self.library.get()))
    let x = ExternTensor(shape: [3, 8], data: (0..<24).map { Float($0) * 0.25 - 2 })
    #expect(try call([x]) == x)
  }

  @Test func aMissingKernelIsALocatedError() throws {
    let (registry, m) = try setUp()
    try Fixtures.runPipeline("demo-rotate<kernel=demo_missing_f32>", on: m, registry: registry)
    let op = try #require(m.allOps.first { $0.name == ExternCall.opName })
    let error = #expect(throws: ExternKernelError.self) { try ExternCall(op: op) }
    #expect(error?.message == "@block.0 op #1 'qopt.extern': external kernel 'demo_missing_f32' is not registered")
  }

  @Test func hostileSizesAreReportedErrorsNotTraps() throws {
    // Shapes [2^40, 2^40], [2^32, 2^32] (wraps to 0), [-2, -3] and [2^63-1, 2^63-1, 2] for
    // weight_write_f32, and a [2^40, 2^40] op result: each refused, each an error of the pass.
    let (registry, m) = try setUp()
    var log: [String] = []
    let error = #expect(throws: PassError.self) { log = try Fixtures.runPipeline("demo-hostile", on: m, registry: registry) }
    #expect(m.attributes["demo.hostile"] == .int(5))
    #expect(error?.description == "error: demo-hostile: weight_write_f32 'demo.hostile.a': dims [1099511627776, 1099511627776] are negative or their product overflows")
    #expect(!m.weights.names.contains { $0.hasPrefix("demo.hostile") })
    #expect(!m.text.contains("demo.big"))
    _ = log
  }
}

/// The Swift path of docs/writing-a-plugin.md: a module map over the installed header and
/// `swiftc -emit-library`, from a directory outside the package.
@Suite struct OutOfTreeSwiftPluginTests {
  @Test func buildsWithSwiftcAndRuns() throws {
    let dir = try Fixtures.tempDir()
    try "module CQoptPlugin {\n  header \"\(Fixtures.headerDir)/qopt_plugin.h\"\n  export *\n}\n"
      .write(toFile: dir + "/module.modulemap", atomically: true, encoding: .utf8)
    try PluginSources.swiftOutOfTree.write(toFile: dir + "/CountLinears.swift", atomically: true, encoding: .utf8)
    let lib = dir + "/libCountLinears.so"
    let (status, output) = try Fixtures.run(
      "/usr/bin/env",
      ["swiftc", "-emit-library", "-module-name", "CountLinears", "-parse-as-library", "-swift-version", "6",
       "-I", dir, "CountLinears.swift", "-o", lib], in: dir)
    try #require(status == 0, "swiftc failed:\n\(output)")
    let registry = PassRegistry.builtin()
    #expect(try PluginLoader.load(lib, into: registry).name == "CountLinears")
    let m = try Parser.parse(OutOfTreePluginTests.text, file: "demo.ir")
    try Fixtures.runPipeline("count-linears<attr=n_linear>", on: m, registry: registry)
    #expect(m.attributes["n_linear"] == .int(1))
    #expect(registry.pass(named: "count-linears")?.options.first?.defaultValue == "linear_count")
  }
}
