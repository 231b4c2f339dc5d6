import Foundation
import QoptIR
import QoptPasses
import QoptPluginHost
import Testing

/// The Swift sample `bit-width-rule` and `rtn` honouring the `qopt.bits` it records.
@Suite struct BitWidthRuleTests {
  private let q: [Float] = (0..<32).map { sin(Float($0)) }
  private let down: [Float] = (0..<32).map { cos(Float($0) * 0.7) }
  private let qName = "model.layers.0.self_attn.q_proj.weight"
  private let downName = "model.layers.0.mlp.down_proj.weight"

  private func bits(_ m: Module, _ weight: String) -> Int? {
    m.allOps.first { $0.paramName == weight }?.attributes["qopt.bits"]?.intValue
  }

  @Test func recordsTheChosenWidthOnEachParam() throws {
    let registry = try Fixtures.registry(loading: [try Fixtures.builtPlugin("BitWidthRule")])
    let m = Fixtures.twoLinearModel(q: q, down: down, rows: 4, cols: 8)
    let log = try Fixtures.runPipeline("bit-width-rule<default=4;rule=re:.*down_proj:8>", on: m, registry: registry)
    #expect(bits(m, qName) == 4)
    #expect(bits(m, downName) == 8)
    #expect(log.contains { $0.contains("remark: bit-width-rule: chose bit widths for linear weights (4 bits: 1, 8 bits: 1)") })
    // The attribute prints and parses back.
    let text = m.text
    #expect(text.contains("param @model.layers.0.mlp.down_proj.weight {qopt.bits = 8}"))
    #expect(try Parser.parse(text, file: "t.ir").text == text)
  }

  @Test func rtnQuantizesEachWeightAtItsWidth() throws {
    let registry = try Fixtures.registry(loading: [try Fixtures.builtPlugin("BitWidthRule")])
    let m = Fixtures.twoLinearModel(q: q, down: down, rows: 4, cols: 8)
    try Fixtures.runPipeline("bit-width-rule<default=3;rule=re:.*down_proj:8>,rtn<bits=4;group-size=8>", on: m, registry: registry)
    let qq = try #require(m.weights.quantized(qName))
    let dq = try #require(m.weights.quantized(downName))
    guard case .int(let qs) = qq.scheme, case .int(let ds) = dq.scheme else { Issue.record("not int schemes"); return }
    #expect(qs.bits == 3)
    #expect(ds.bits == 8)
    let qType = m.allOps.first { $0.paramName == qName }?.result?.type
    #expect(qType.map(Printer.type) == "tensor<4x8x!q.int<3, sym, group=8, scale=f16>>")
    // 8 bits reconstructs much better than 3.
    let errQ = zip(qq.dequantized(), q).map { abs($0 - $1) }.max() ?? 0
    let errD = zip(dq.dequantized(), down).map { abs($0 - $1) }.max() ?? 0
    #expect(errD < errQ / 8)
  }

  @Test func rtnRejectsAnInvalidWidthAttribute() throws {
    let m = Fixtures.twoLinearModel(q: q, down: down, rows: 4, cols: 8)
    m.allOps.first { $0.paramName == qName }?.attributes["qopt.bits"] = .int(12)
    let error = #expect(throws: PassError.self) { try Fixtures.runPipeline("rtn<group-size=8>", on: m, registry: .builtin()) }
    #expect(error?.message == "'qopt.bits' of @model.layers.0.self_attn.q_proj.weight must be an integer in 2...8, found 12")
  }

  @Test func malformedRuleFailsThePass() throws {
    let registry = try Fixtures.registry(loading: [try Fixtures.builtPlugin("BitWidthRule")])
    let m = Fixtures.twoLinearModel(q: q, down: down, rows: 4, cols: 8)
    let error = #expect(throws: PassError.self) {
      try Fixtures.runPipeline("bit-width-rule<rule=re:.*down_proj:16>", on: m, registry: registry)
    }
    #expect(error?.pass == "bit-width-rule")
    #expect(error?.message == "rule 're:.*down_proj:16' must be 'pattern:bits' with bits in 2...8")
  }

  @Test func unusedRuleWarns() throws {
    let registry = try Fixtures.registry(loading: [try Fixtures.builtPlugin("BitWidthRule")])
    let m = Fixtures.twoLinearModel(q: q, down: down, rows: 4, cols: 8)
    let log = try Fixtures.runPipeline("bit-width-rule<rule=re:.*gate_proj:6>", on: m, registry: registry)
    #expect(log.contains("warning: bit-width-rule: rule 're:.*gate_proj:6' matches no linear weight"))
  }
}
