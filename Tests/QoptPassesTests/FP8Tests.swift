import QoptIR
import QoptPasses
import QoptTestSupport
import Testing

@Test func fp8PerChannelScalesAndCodes() {
  let w: [Float] = [1, -2, 4, 448, 0.5, 0.25, -0.125, 1]
  let q = w.withUnsafeBufferPointer { FP8Quantizer.quantize($0, rows: 2, cols: 4, granularity: .channel) }
  #expect(q.scale.shape == [2, 1])
  #expect(q.scale.floats() == [1, Float(1) / 448])
  #expect(q.codes.bytes[3] == 0x7E)  // 448 / 1 → 448
  #expect(q.codes.bytes[2] == floatToE4M3(4))
  // Dequantization is exact for values on the e4m3 grid times the scale.
  #expect(q.dequantized()[0..<4] == [1, -2, 4, 448])
}

@Test func fp8PerTensorAndZeroScale() {
  let z = [Float](repeating: 0, count: 4)
  let q = z.withUnsafeBufferPointer { FP8Quantizer.quantize($0, rows: 1, cols: 4, granularity: .tensor) }
  #expect(q.scale.floats() == [Float.ulpOfOne])
  #expect(q.codes.bytes == [0, 0, 0, 0])
}

@Test func rtnFP8QuantizesTheExampleModel() throws {
  let m = ExampleModel.make()
  try PassManager(threads: 1) { _ in }.run(PipelineParser.parse("rtn<scheme=fp8;group-size=-1>,verify", registry: .builtin()), on: m)
  let q = try #require(m.weights.quantized("model.layers.0.mlp.up_proj.weight"))
  #expect(q.scheme == .fp8(.channel))
  let src = ExampleModel.make().weights.dense("model.layers.0.mlp.up_proj.weight")!.floats()
  let dq = q.dequantized()
  // E4M3 has 3 mantissa bits: relative error at most 2^-4 for normal values.
  for (a, b) in zip(dq, src) where abs(b) > 1e-3 { #expect(abs(a - b) <= abs(b) * 0.0625 + 1e-6) }
}
