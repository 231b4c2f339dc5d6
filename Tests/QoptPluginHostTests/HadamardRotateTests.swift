import QoptExternKernels
import QoptIR
import QoptPasses
import QoptPluginHost
import Testing

/// The C sample `hadamard-rotate`: a plugin that adds an op and the runtime kernel for it.
/// The rotated model must compute what the original did.
@Suite struct HadamardRotateTests {
  private let q: [Float] = (0..<16).map { Float(($0 * 7) % 11) * 0.1 - 0.5 }
  private let down: [Float] = (0..<16).map { $0 == 5 ? 6.0 : Float($0 % 4) * 0.2 - 0.3 }
  private let x = ExternTensor(shape: [3, 8], data: (0..<24).map { Float(($0 * 5) % 13) * 0.25 - 1.5 })

  /// `x · Wᵀ` for a row-major `[rows, 8]` weight.
  private func linear(_ x: ExternTensor, _ w: [Float], rows: Int) -> [Float] {
    let cols = x.shape[1]
    var y = [Float](repeating: 0, count: x.shape[0] * rows)
    for t in 0..<x.shape[0] {
      for r in 0..<rows {
        var s: Float = 0
        for c in 0..<cols { s += x.data[t * cols + c] * w[r * cols + c] }
        y[t * rows + r] = s
      }
    }
    return y
  }

  private func setUp(_ pipeline: String) throws -> (Module, [String]) {
    let registry = try Fixtures.registry(loading: [try Fixtures.builtPlugin("HadamardRotate")])
    let m = Fixtures.twoLinearModel(q: q, down: down, rows: 2, cols: 8)
    return (m, try Fixtures.runPipeline(pipeline, on: m, registry: registry))
  }

  @Test func rotatedModelComputesTheSameProducts() throws {
    let (m, log) = try setUp("hadamard-rotate")
    let ext = try #require(m.allOps.first { $0.name == ExternCall.opName })
    #expect(m.allOps.filter { $0.name == ExternCall.opName }.count == 1)  // one per input value
    for lin in m.allOps where lin.kind == .linear { #expect(lin.operands[0] === ext.result) }
    #expect(log.contains("remark: hadamard-rotate: inserted 1 rotations (qopt_hadamard_f32), rotated 2 weights"))
    let call = try ExternCall(op: ext)
    #expect(call.plugin.hasSuffix("libHadamardRotate.so"))
    let rx = try call([x])
    for (name, original) in [("model.layers.0.self_attn.q_proj.weight", q), ("model.layers.0.mlp.down_proj.weight", down)] {
      let rotated = try #require(m.weights.dense(name)).floats()
      #expect(rotated != original)
      let before = linear(x, original, rows: 2)
      let after = linear(rx, rotated, rows: 2)
      #expect(zip(before, after).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($0)) }, "\(before) vs \(after)")
    }
    // The outlier 6.0 is spread over its row.
    let rotatedDown = try #require(m.weights.dense("model.layers.0.mlp.down_proj.weight")).floats()
    #expect(rotatedDown.map(abs).max()! < 3)  // safe: non-empty
  }

  @Test func identityModeLeavesWeightsAndValuesExact() throws {
    let (m, _) = try setUp("hadamard-rotate<mode=identity>")
    #expect(try #require(m.weights.dense("model.layers.0.self_attn.q_proj.weight")).floats() == q)
    let ext = try #require(m.allOps.first { $0.name == ExternCall.opName })
    #expect(ext.attributes["symbol"] == .string("qopt_identity_f32"))
    #expect(try ExternCall(op: ext)([x]) == x)
  }

  @Test func rotatedWeightsQuantizeInTheSamePipeline() throws {
    let (m, _) = try setUp("hadamard-rotate,rtn<bits=4;group-size=8>")
    #expect(m.weights.quantized("model.layers.0.mlp.down_proj.weight") != nil)
    #expect(try Parser.parse(m.text, file: "r.ir").text == m.text)
  }
}
