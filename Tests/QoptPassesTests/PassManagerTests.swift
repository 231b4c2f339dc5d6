import QoptIR
import QoptPasses
import QoptTestSupport
import Testing

@Test func pipelineTextParsesOptionsAsLLVMWritesThem() throws {
  let p = try PipelineParser.parse("rtn<bits=3;no-sym;group-size=64;ignore=a,re:b.*>,verify", registry: .builtin())
  #expect(p.map(\.pass.name) == ["rtn", "verify"])
  let o = try #require(p[0].options as? RTNOptions)
  #expect(o.bits == 3 && !o.sym && o.groupSize == 64 && o.ignore == ["a", "re:b.*"])
  #expect(p[1].column == 50)
}

@Test func choicesParseIntoTypedValues() throws {
  let p = try PipelineParser.parse("rtn<scheme=fp8>", registry: .builtin())
  #expect((p[0].options as? RTNOptions)?.scheme == .fp8)
  #expect((try PipelineParser.parse("rtn", registry: .builtin())[0].options as? RTNOptions)?.scheme == .int)
  let listed = try #require(PassRegistry.builtin().pass(named: "rtn")?.options.first { $0.key == "scheme" })
  let schemes = "int|nvfp4|fp8|q4_0|q4_1|q5_0|q5_1|q8_0|q2_k|q3_k|q4_k|q5_k|q6_k|iq4_nl|iq4_xs"
  #expect(listed.valueSyntax == schemes && listed.defaultValue == "int")
}

@Test(arguments: [
  ("rtm", 1, "did you mean 'rtn'"), ("rtn<bits=1>", 5, "must be in 2...8"), ("rtn<group-size=x>", 5, "expects an integer"),
  ("verify<x=1>", 8, "it takes no options"), ("rtn,", 5, "expected a pass name after ','"), ("rtn<sym=maybe>", 5, "expects true or false"),
])
func pipelineErrorsNameTheProblemAndColumn(_ text: String, _ column: Int, _ message: String) {
  #expect {
    _ = try PipelineParser.parse(text, registry: .builtin())
  } throws: { e in
    guard let e = e as? PipelineError else { return false }
    return e.column == column && e.message.contains(message)
  }
}

@Test func registryRefusesDuplicateNames() {
  let r = PassRegistry.builtin()
  #expect(throws: RegistryError.self) { try r.register(verifyPass) }
}

/// A counting analysis: computed once, cached, invalidated by a pass that changes the module.
enum CountingAnalysis: Analysis {
  nonisolated(unsafe) static var computed = 0
  static let name = "counting"
  static func compute(_ module: Module, _ analyses: AnalysisManager) throws -> Int {
    computed += 1
    return module.allOps.count
  }
}

@Test func analysesAreCachedAndInvalidatedByChangingPasses() throws {
  let m = ExampleModel.make()
  let read = Pass("read-count", summary: "", options: NoOptions.self) { _, _, ctx in _ = try ctx.analysis(CountingAnalysis.self) }
  let touch = Pass("touch", summary: "", options: NoOptions.self) { _, _, ctx in ctx.markChanged() }
  let keep = Pass("touch-keep", summary: "", options: NoOptions.self, preserves: ["counting"]) { _, _, ctx in ctx.markChanged() }
  let r = PassRegistry()
  for p in [read, touch, keep] { try r.register(p) }
  var log: [String] = []
  var ins = Instrumentation()
  ins.debugPassManager = true
  let pm = PassManager(instrumentation: ins, threads: 1) { log.append($0) }
  CountingAnalysis.computed = 0
  try pm.run(PipelineParser.parse("read-count,read-count,touch-keep,read-count,touch,read-count", registry: r), on: m)
  #expect(CountingAnalysis.computed == 2)
  #expect(log.contains("qopt-pm: invalidating analysis: counting"))
  #expect(log.filter { $0 == "qopt-pm: cached analysis: counting" }.count == 2)
}

@Test func linearGroupsAreFoundFromDataflow() throws {
  let m = ExampleModel.make()
  let groups = try LinearGroupsAnalysis.compute(m, AnalysisManager(log: { _ in }))
  // Per block: q/k/v read the normed input, gate/up the second normed input.
  #expect(groups.count == 4)
  #expect(groups.map { $0.linears.count } == [3, 2, 3, 2])
  // Renaming every weight and value changes nothing: the sets come from the dataflow.
  for op in m.allOps {
    if let n = op.paramName { op.attributes["name"] = .symbol("renamed." + String(n.reversed())) }
    op.result?.name = "r" + (op.result?.name ?? "")
  }
  let again = try LinearGroupsAnalysis.compute(m, AnalysisManager(log: { _ in }))
  #expect(again.map { $0.linears.count } == [3, 2, 3, 2])
}

@Test func rtnQuantizesTheExampleModelAndItStillVerifies() throws {
  let m = ExampleModel.make()
  let pm = PassManager(threads: 2) { _ in }
  try pm.run(PipelineParser.parse("rtn<bits=4;group-size=32>,verify", registry: .builtin()), on: m)
  let q = try #require(m.weights.quantized("model.layers.1.mlp.down_proj.weight"))
  #expect(q.scale.shape == [64, 4])
  #expect(m.weights.dense("model.embed_tokens.weight") != nil)
  // Threads do not change the result: with more than one, whole weights go to the workers
  // (RTNJob), and every weight's codes and scales are the ones one thread makes.
  let quantizedNames = m.weights.names.filter { m.weights.quantized($0) != nil }
  #expect(quantizedNames.count == 14)
  for threads in [1, 3] {
    let other = ExampleModel.make()
    try PassManager(threads: threads) { _ in }.run(
      PipelineParser.parse("rtn<bits=4;group-size=32>", registry: .builtin()), on: other)
    for name in quantizedNames {
      let a = try #require(m.weights.quantized(name)), b = try #require(other.weights.quantized(name))
      #expect(b.codes.isIdentical(to: a.codes), "\(name), \(threads) threads")
      #expect(b.scale.isIdentical(to: a.scale), "\(name), \(threads) threads")
    }
  }
}
