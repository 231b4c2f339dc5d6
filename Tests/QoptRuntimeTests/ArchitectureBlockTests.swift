import QoptFormats
import QoptFrontends
import QoptIR
import QoptRuntime
import Testing

// The block executor (calibrate and AutoRound's forward and reverse) against the interpreter
// (`qopt eval`) on every family's blocks: the same inputs must give the same outputs, with both
// sequences run as two samples of one batch; the reverse must match finite differences of the
// executor's own forward on a whole block.

/// Each block's input and output for each fixture sequence, as the interpreter computes them.
private func interpreterBlocks(
  _ module: Module, _ ids: [[Int32]]
) throws -> [String: [(input: Tensor, output: Tensor)]] {
  let interp = Interpreter(module: module)
  var values: [ObjectIdentifier: Tensor] = [:]
  var out: [String: [(Tensor, Tensor)]] = [:]
  interp.observer = { op, value in
    guard case .tensor(let t) = value, let r = op.result else { return }
    if let callee = op.callee, let input = values[ObjectIdentifier(op.operands[0])] {
      out[callee, default: []].append((input, t))
    }
    if op.parent?.name == "main" { values[ObjectIdentifier(r)] = t }
  }
  for seq in ids { _ = try interp.run(ids: seq) }
  return out
}

@Suite(.serialized) struct ArchitectureBlockTests {
  @Test(arguments: ArchitectureLogitsTests.families)
  func blockExecutorMatchesInterpreter(_ family: String) throws {
    let ref = try ArchReference(family: family)
    let module = try ModelImporter.load(path: archFixtures + "/" + family)
    let blocks = try interpreterBlocks(module, ref.ids)
    #expect(blocks.count == 2)
    for (name, runs) in blocks {
      let f = try #require(module.function(named: name))
      let exec = try BlockExecutor(function: f, module: module)
      let t = runs[0].input.rows
      let x = runs.flatMap(\.input.data)
      let expected = runs.flatMap(\.output.data)
      let y = Array(
        UnsafeBufferPointer(
          start: exec.forward(x, samples: runs.count, tokens: t), count: expected.count))
      let worst = zip(y, expected).map { abs($0 - $1) }.max() ?? .infinity
      #expect(worst < 1e-5, "\(family) @\(name): executor vs interpreter max diff \(worst)")
      // Routing every token to every expert (for statistics) must not change the output.
      exec.dispatchAllTokens = true
      let all = Array(
        UnsafeBufferPointer(
          start: exec.forward(x, samples: runs.count, tokens: t), count: expected.count))
      #expect(
        zip(all, y).allSatisfy { abs($0 - $1) < 1e-6 },
        "\(family) @\(name): dispatch-all changed the output")
    }
  }

  /// ∂L/∂W from `backward` against central differences of `forward`, L = Σ g · block(x), for
  /// the first two linears and the last one of block 0 (the last is inside the MoE, Gemma's
  /// sandwich norms or Phi-3's fused MLP), and every expert linear of the MoE fixtures.
  @Test(arguments: ArchitectureLogitsTests.families)
  func blockReverseMatchesFiniteDifferences(_ family: String) throws {
    let ref = try ArchReference(family: family)
    let module = try ModelImporter.load(path: archFixtures + "/" + family)
    let runs = try #require(try interpreterBlocks(module, ref.ids)["block.0"])
    let f = try #require(module.function(named: "block.0"))
    let exec = try BlockExecutor(function: f, module: module)
    let t = runs[0].input.rows
    let x = runs.flatMap(\.input.data)
    var s: UInt64 = 7
    let g: [Float] = (0..<x.count).map { _ in
      s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      return Float(Double(s >> 11) / Double(1 << 53) * 2 - 1)
    }
    let names = exec.linearWeightNames
    var checked = [names[0], names[1], names[names.count - 1]]
    if family.contains("moe") || family == "mixtral" {
      checked += names.filter { $0.contains("experts.1.") }
    }
    // The loss, and which tokens each expert linear saw: a perturbation that moves a token to
    // another expert makes the loss jump, and such differences are skipped.
    func loss() -> (Double, [String: Int]) {
      var seen: [String: Int] = [:]
      exec.linearInputHook = { name, _, rows, _ in seen[name] = rows }
      defer { exec.linearInputHook = nil }
      let y = exec.forward(x, samples: runs.count, tokens: t)
      return ((0..<g.count).reduce(0.0) { $0 + Double(g[$1]) * Double(y[$1]) }, seen)
    }
    let routing = loss().1
    exec.trainable = Set(checked)
    _ = exec.forward(x, samples: runs.count, tokens: t)
    let grads = g.withUnsafeBufferPointer { exec.backward($0.baseAddress!) }
    for name in checked {
      let shape = try #require(exec.weightShape(name))
      let n = shape[0] * shape[1]
      let analytic = Array(UnsafeBufferPointer(start: try #require(grads[name]), count: n))
      let w = try #require(exec.weightPointer(name))
      // Entries with the largest gradients (float32 differences are meaningful there), four
      // whose perturbation keeps every token's experts.
      var compared = 0
      for i in analytic.indices.sorted(by: { abs(analytic[$0]) > abs(analytic[$1]) }).prefix(40)
      where compared < 4 {
        let w0 = w[i], h: Float = 1e-2
        w[i] = w0 + h
        let (lp, rp) = loss()
        w[i] = w0 - h
        let (lm, rm) = loss()
        w[i] = w0
        guard rp == routing && rm == routing else { continue }
        compared += 1
        let numeric = (lp - lm) / Double(2 * h)
        let scale = max(abs(numeric), 1e-3)
        #expect(
          abs(Double(analytic[i]) - numeric) / scale < 2e-2,
          "\(family) \(name)[\(i)]: backward \(analytic[i]) vs differences \(numeric)")
      }
      #expect(compared > 0, "\(family) \(name): every perturbation changed the routing")
    }
  }
}
