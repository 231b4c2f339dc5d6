import QoptIR
import QoptPasses
import QoptTestSupport
import Testing

// The C loops of `TrainableQuantLinear` (CQoptKernels/quant_train.c) against plain scalar Swift
// loops of the same formulas, bit for bit, on one thread and split between several: the split
// must not change a single bit (finetune is deterministic for a seed and any -threads).

/// The example model's first block linears, quantized asymmetric int3 in groups of 16 (zero
/// points and a clamp range to leave).
private func linears(trainWeights: Bool) throws -> [TrainableQuantLinear] {
  let m = ExampleModel.make()
  var pm = PassManager(threads: 1) { _ in }
  try pm.run(PipelineParser.parse("rtn<bits=3;group-size=16;no-sym>", registry: .builtin()), on: m)
  return try WholeModel(module: m, trainWeights: trainWeights).linears[0]
}

/// `ŵ` and the gradients of `dw`, by the formulas of docs/finetune.md, one element at a time.
private func reference(
  _ l: TrainableQuantLinear, dw: [Float]
) -> (
  w: [Float], gs: [Float], gz: [Float], gw: [Float]
) {
  var out = [Float](repeating: 0, count: l.rows * l.cols)
  var gs = [Float](repeating: 0, count: l.scale.count)
  var gz = [Float](repeating: 0, count: l.zero.count)
  var gw = [Float](repeating: 0, count: l.weights?.count ?? 0)
  let qmin = Float(l.scheme.qmin), qmax = Float(l.scheme.qmax)
  for r in 0..<l.rows {
    for c in 0..<l.cols {
      let g = l.perTensor ? 0 : r * l.groupsPerRow + c / l.groupSize, i = r * l.cols + c
      let s = l.scale[g], z: Float = l.zero.isEmpty ? 0 : l.zero[g]
      var q = Float(l.codes[i])
      var inside = false
      if let w = l.weights {
        let x = (w[i] / s + z).rounded(.toNearestOrEven)
        q = min(max(x, qmin), qmax)
        inside = x == q
      }
      out[i] = s * (q - z)
      let d = dw[i]
      if let w = l.weights, inside {
        gw[i] += d
        gs[g] += d * (q - z - w[i] / s)
      } else {
        gs[g] += d * (q - z)
        if !l.zero.isEmpty { gz[g] -= d * s }
      }
    }
  }
  return (out, gs, gz, gw)
}

@Test(arguments: [false, true])
func finetuneKernelsMatchScalarLoopsOnAnySplit(trainWeights: Bool) throws {
  for threads in [1, 3] {
    for l in try linears(trainWeights: trainWeights) {
      #expect(!l.zero.isEmpty)
      if trainWeights {
        // Move some weights past the clamp range so both branches of the gradient run.
        for i in stride(from: 0, to: l.weights!.count, by: 7) { l.weights![i] *= 3 }
      }
      let dw = (0..<(l.rows * l.cols)).map { Float(($0 * 37) % 101) / 50 - 1 }
      let want = reference(l, dw: dw)
      var got = [Float](repeating: 0, count: l.rows * l.cols)
      got.withUnsafeMutableBufferPointer { l.qdq(into: $0.baseAddress!, threads: threads) }
      l.clearGradients()
      dw.withUnsafeBufferPointer { l.backward(dw: $0.baseAddress!, threads: threads) }
      #expect(got.map(\.bitPattern) == want.w.map(\.bitPattern), "\(l.name) ŵ, \(threads) threads")
      #expect(l.gradScale.map(\.bitPattern) == want.gs.map(\.bitPattern), "\(l.name) ∂s")
      #expect(l.gradZero.map(\.bitPattern) == want.gz.map(\.bitPattern), "\(l.name) ∂z")
      #expect((l.gradWeights ?? []).map(\.bitPattern) == want.gw.map(\.bitPattern), "\(l.name) ∂w")
    }
  }
}
