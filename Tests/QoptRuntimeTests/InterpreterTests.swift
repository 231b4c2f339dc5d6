#if canImport(Glibc)
  import Glibc
#endif
import QoptIR
import QoptRuntime
import QoptTestSupport
import Testing

@Suite struct InterpreterTests {
  private let ids: [Int32] = [3, 17, 200, 5, 99, 42, 7]

  @Test func runsTheExampleModel() throws {
    let m = ExampleModel.make()
    let logits = try Interpreter(module: m).run(ids: ids)
    #expect(logits.shape == [ids.count, 256])
    #expect(logits.data.allSatisfy { $0.isFinite })
  }

  /// The window NLL from the chunked, fused lm_head equals log-softmax over the full logits.
  @Test func chunkedPerplexityEqualsFullLogits() throws {
    let m = ExampleModel.make()
    let interp = Interpreter(module: m)
    let logits = try interp.run(ids: ids)
    var ref = 0.0
    for t in 0..<(ids.count - 1) {
      let row = logits.data[(t * 256)..<((t + 1) * 256)].map(Double.init)
      let mx = row.max()!
      ref += mx + log(row.reduce(0) { $0 + exp($1 - mx) }) - row[Int(ids[t + 1])]
    }
    let got = try Perplexity.windowNLL(interp, ids, chunk: 2)
    #expect(abs(got - ref) < 1e-3)
    let r = try Perplexity.evaluate(interp, ids: ids + ids, seqlen: 7, windows: 40)
    #expect(r.windows == 2)
    #expect(r.predictedTokens == 12)
    #expect(abs(r.meanNLL - ref / 6) < 1e-4)
  }

  /// Quantized weights run through the same kernels after `scale · (code − zp)` dequantization.
  @Test func quantizedWeightsAreDequantized() throws {
    let m = ExampleModel.make()
    let before = try Interpreter(module: m).run(ids: ids)
    let name = "model.layers.0.mlp.up_proj.weight"
    let w = m.weights.dense(name)!
    let (rows, cols) = (w.shape[0], w.shape[1])
    let v = w.floats()
    var codes = [Int8](repeating: 0, count: v.count)
    var scales = [Float](repeating: 0, count: rows * 2)
    var zeros = [Int8](repeating: 0, count: rows * 2)
    for r in 0..<rows {
      for g in 0..<2 {
        let seg = (0..<(cols / 2)).map { v[r * cols + g * cols / 2 + $0] }
        let s = (seg.max()! - seg.min()!) / 255
        let zp = Int8(clamping: Int((-seg.min()! / s).rounded()) - 128)
        scales[r * 2 + g] = s
        zeros[r * 2 + g] = zp
        for (i, x) in seg.enumerated() { codes[r * cols + g * cols / 2 + i] = Int8(clamping: Int((x / s).rounded()) + Int(zp)) }
      }
    }
    let scheme = IntScheme(bits: 8, symmetric: false, granularity: .group(cols / 2), scaleType: .f32)
    m.weights.set(name, .quantized(QuantizedTensor(
      scheme: .int(scheme), codes: TensorData(int8: codes, shape: [rows, cols]),
      scale: TensorData(floats: scales, shape: [rows, 2]), zeroPoint: TensorData(int8: zeros, shape: [rows, 2]))))
    let op = m.allOps.first { $0.paramName == name }!
    op.result!.type = TensorType([rows, cols], .quantized(.int(scheme)))
    let after = try Interpreter(module: m).run(ids: ids)
    // The same values as a dense f32 weight give the same logits.
    var deq = [Float](repeating: 0, count: v.count)
    for r in 0..<rows { for c in 0..<cols { deq[r * cols + c] = scales[r * 2 + c / (cols / 2)] * (Float(codes[r * cols + c]) - Float(zeros[r * 2 + c / (cols / 2)])) } }
    let dense = ExampleModel.make()
    dense.weights.set(name, .dense(TensorData(floats: deq, shape: [rows, cols])))
    let ref = try Interpreter(module: dense).run(ids: ids)
    #expect(after.data == ref.data)
    let diff = zip(before.data, after.data).map { abs($0 - $1) }.max()!
    #expect(diff > 0)
  }

  @Test func outOfVocabularyIdIsAnError() {
    #expect(throws: RuntimeError.self) { _ = try Interpreter(module: ExampleModel.make()).run(ids: [1, 256]) }
  }
}
