import QoptIR
import QoptPasses
import QoptPluginHost
import Testing

/// The C sample `clip-outliers`, loaded from the built library and run by the pass manager.
@Suite struct ClipOutliersTests {
  /// Row-wise clip at mean ± k·σ, computed independently in double precision.
  private func clipped(_ w: [Float], cols: Int, k: Double) -> [Float] {
    var out = w
    for r in 0..<(w.count / cols) {
      let row = w[(r * cols)..<((r + 1) * cols)].map(Double.init)
      let mean = row.reduce(0, +) / Double(cols)
      let sigma = (row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(cols)).squareRoot()
      let (lo, hi) = (Float(mean - k * sigma), Float(mean + k * sigma))
      for c in 0..<cols { out[r * cols + c] = min(max(w[r * cols + c], lo), hi) }
    }
    return out
  }

  private let q: [Float] = [0.1, -0.2, 0.3, 9.0, 0.0, 0.2, -0.1, 0.1, 0.05, -0.3, 0.2, -7.5, 0.1, 0.2, 0.0, 0.4]
  private let down: [Float] = (0..<16).map { Float($0 % 5) * 0.1 - 0.2 }

  @Test(arguments: [1.0, 1.5, 3.0])
  func clipsEachRowAtKSigma(k: Double) throws {
    let registry = try Fixtures.registry(loading: [try Fixtures.builtPlugin("ClipOutliers")])
    let m = Fixtures.twoLinearModel(q: q, down: down, rows: 2, cols: 8)
    let log = try Fixtures.runPipeline("clip-outliers<k=\(k)>", on: m, registry: registry)
    let got = try #require(m.weights.dense("model.layers.0.self_attn.q_proj.weight")).floats()
    #expect(zip(got, clipped(q, cols: 8, k: k)).allSatisfy { abs($0 - $1) <= 1e-6 * max(1, abs($1)) })
    let gotDown = try #require(m.weights.dense("model.layers.0.mlp.down_proj.weight")).floats()
    #expect(zip(gotDown, clipped(down, cols: 8, k: k)).allSatisfy { abs($0 - $1) <= 1e-6 })
    #expect(log.contains { $0.contains("remark: clip-outliers: clipped") })
  }

  @Test func keepsTheWeightDtypeAndFeedsRTN() throws {
    let registry = try Fixtures.registry(loading: [try Fixtures.builtPlugin("ClipOutliers")])
    let m = Fixtures.twoLinearModel(q: q, down: down, rows: 2, cols: 8, dtype: .bf16)
    try Fixtures.runPipeline("clip-outliers<k=1.5>", on: m, registry: registry)
    let w = try #require(m.weights.dense("model.layers.0.self_attn.q_proj.weight"))
    #expect(w.dtype == .bf16)
    #expect(w.floats().max()! < 9.0)  // safe: non-empty
    try Fixtures.runPipeline("rtn<bits=4;group-size=8>", on: m, registry: registry)
    #expect(m.weights.quantized("model.layers.0.self_attn.q_proj.weight") != nil)
  }

  @Test func optionsAreParsedLikeBuiltins() throws {
    let registry = try Fixtures.registry(loading: [try Fixtures.builtPlugin("ClipOutliers")])
    let outOfRange = #expect(throws: PipelineError.self) { try PipelineParser.parse("clip-outliers<k=1000>", registry: registry) }
    #expect(outOfRange?.message == "option 'k' of pass 'clip-outliers' must be in 0.1...100.0, found 1000")
    #expect(outOfRange?.column == 15)
    let unknown = #expect(throws: PipelineError.self) { try PipelineParser.parse("verify,clip-outliers<kk=2>", registry: registry) }
    #expect(unknown?.message == "unknown option 'kk' for pass 'clip-outliers'; did you mean 'k'? (valid options: k)")
    let notANumber = #expect(throws: PipelineError.self) { try PipelineParser.parse("clip-outliers<k=abc>", registry: registry) }
    #expect(notANumber?.message == "option 'k' of pass 'clip-outliers' expects a number, found 'abc'")
  }

  @Test func leavesQuantizedWeightsAlone() throws {
    let registry = try Fixtures.registry(loading: [try Fixtures.builtPlugin("ClipOutliers")])
    let m = Fixtures.twoLinearModel(q: q, down: down, rows: 2, cols: 8)
    try Fixtures.runPipeline("rtn<bits=4;group-size=8>", on: m, registry: registry)
    let before = try #require(m.weights.quantized("model.layers.0.self_attn.q_proj.weight")).codes
    try Fixtures.runPipeline("clip-outliers", on: m, registry: registry)
    let after = try #require(m.weights.quantized("model.layers.0.self_attn.q_proj.weight")).codes
    #expect(before.isIdentical(to: after))
  }
}
