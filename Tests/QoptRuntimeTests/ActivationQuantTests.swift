import QoptIR
import QoptPasses
import QoptRuntime
import QoptTestSupport
import Testing

private func fakeQuant(_ x: [Float], rows: Int, _ q: InputQuantization) -> [Float] {
  var y = x
  y.withUnsafeMutableBufferPointer { Kernels.fakeQuantize($0.baseAddress!, rows: rows, columns: x.count / rows, q) }
  return y
}

private let int8Token = InputQuantization(kind: .int8, mode: .dynamic, strategy: .token)
private let fp8Token = InputQuantization(kind: .fp8, mode: .dynamic, strategy: .token)

/// reference/compressed-tensors.md §8.11: the token [1.0, −2.55, 0.5] has scale 2.55/127.5 =
/// 0.02; −2.55/0.02 = −127.5 rounds half to even to −128 (clamp before round), so it comes
/// back as −2.56.
@Test func int8DynamicPerTokenHandVector() {
  #expect(Float(2.55) / 127.5 == Float(0.02))
  #expect(fakeQuant([1.0, -2.55, 0.5], rows: 1, int8Token) == [1.0, Float(-128) * 0.02, 0.5])
  // A positive amax lands on +127.5 and is clamped to 127.
  #expect(fakeQuant([2.55, 0.0], rows: 1, int8Token) == [Float(127) * 0.02, 0])
  // Rows are independent: the second row's scale is 1/127.5.
  let two = fakeQuant([1.0, -2.55, 0.5, 1.0, 0.5, -0.25], rows: 2, int8Token)
  let s = Float(1) / 127.5
  #expect(Array(two[3...]) == [Float(127) * s, (0.5 / s).rounded(.toNearestOrEven) * s, (-0.25 / s).rounded(.toNearestOrEven) * s])
}

/// FP8: [1, −3, 0.3, 0, 0.001] with amax 3 → s = 3/448; x/s = [149.33, −448, 44.8, 0, 0.149]
/// rounds to the E4M3 grid [144, −448, 44, 0, 0.15625] (steps 16, 4 and the subnormal 2^−9).
@Test func fp8DynamicPerTokenHandVector() {
  let s = Float(3) / 448
  let y = fakeQuant([1.0, -3.0, 0.3, 0.0, 0.001], rows: 1, fp8Token)
  #expect(y == [144 * s, -448 * s, 44 * s, 0, 0.15625 * s])
}

/// Static and per-tensor scales; an all-zero input gets the epsilon scale and stays zero.
@Test func staticAndPerTensorScales() {
  let st = InputQuantization(kind: .int8, mode: .static, strategy: .tensor, scale: 0.5)
  #expect(fakeQuant([0.26, -0.74, 100, -100], rows: 2, st) == [0.5, -0.5, 63.5, -64])
  let dt = InputQuantization(kind: .int8, mode: .dynamic, strategy: .tensor)
  let s = Float(4) / 127.5
  // −4/s is −127.49999 in f32 arithmetic (as in the reference), so it rounds to −127.
  #expect(Float(-4) / s > -127.5)
  #expect(fakeQuant([1, 0, 0, -4], rows: 2, dt) == [(1 / s).rounded(.toNearestOrEven) * s, 0, 0, -127 * s])
  #expect(fakeQuant([0, 0, 0], rows: 1, fp8Token) == [0, 0, 0])
  #expect(fakeQuant([0, 0, 0], rows: 1, int8Token) == [0, 0, 0])
}

/// The vectorizable E4M3 rounding equals the reference encoder + decoder for every finite
/// f16 value in [−448, 448] (and ties, subnormals, signed zeros among them).
@Test func fp8RoundingMatchesTheE4M3Codec() {
  let unit = InputQuantization(kind: .fp8, mode: .static, strategy: .tensor, scale: 1)
  var xs: [Float] = []
  for bits in UInt16(0)...UInt16.max {
    let v = Float(Float16(bitPattern: bits))
    if v.isFinite && abs(v) <= 448 { xs.append(v) }
  }
  xs += [448, -448, 0x1p-9, 0x1p-10, 3 * 0x1p-11, 464 - 0x1p-5]
  let y = fakeQuant(xs, rows: 1, unit)
  var bad = 0
  for (x, got) in zip(xs, y) {
    let want = e4m3ToFloat(floatToE4M3(x))
    if got.bitPattern != want.bitPattern && !(got == 0 && want == 0 && got.sign == want.sign) { bad += 1 }
  }
  #expect(bad == 0)
}

/// The interpreter fake-quantizes a linear's input from its attributes; bad attributes are
/// runtime errors naming the op.
@Test func interpreterAppliesInputQuantization() throws {
  let m = ExampleModel.make()
  let ids: [Int32] = [3, 17, 200, 5, 99, 42, 7]
  let before = try Interpreter(module: m).run(ids: ids)
  let linears = m.allOps.filter { $0.kind == .linear && $0.operands[1].definingOp?.paramName != "model.embed_tokens.weight" }
  for op in linears { for (k, v) in fp8Token.attributes { op.attributes[k] = v } }
  try m.verify()
  let after = try Interpreter(module: m).run(ids: ids)
  #expect(after.data != before.data)
  let diff = zip(after.data, before.data).map { abs($0 - $1) }.max() ?? 0
  let range = before.data.map { abs($0) }.max() ?? 0
  #expect(diff < 0.1 * range, "fp8 activations change the logits slightly, found \(diff) of \(range)")
  linears[0].attributes["input_mode"] = .string("sometimes")
  #expect { try Interpreter(module: m).run(ids: ids) } throws: { "\($0)".contains("'input_mode' must be one of dynamic, static") }
}

/// The attribute form round-trips and bad values are reported by the verifier.
@Test func inputQuantizationAttributes() throws {
  let st = InputQuantization(kind: .fp8, mode: .static, strategy: .tensor, scale: 0.012345)
  var d = AttributeDict()
  for (k, v) in st.attributes { d[k] = v }
  #expect(try InputQuantization.parse(d).get() == st)
  d["input_strategy"] = .string("token")
  #expect(throws: InputQuantizationError.self) { try InputQuantization.parse(d).get() }
  #expect(try InputQuantization.parse(AttributeDict()).get() == nil)
  var e = AttributeDict()
  e["input_quant"] = .string("int4")
  #expect(throws: InputQuantizationError.self) { try InputQuantization.parse(e).get() }
}

/// NVFP4 inputs (W4A4) follow the weight rule row by row: quantizing a row as an activation
/// with global scale gs gives what NVFP4Quantizer's codes and scales dequantize to.
@Test func nvfp4ActivationMatchesWeightRule() {
  var rng = SplitMix64(seed: 7)
  let rows = 3, cols = 64
  var x = (0..<(rows * cols)).map { _ in Float(Double(rng.next() >> 11) / Double(1 << 53)) * 4 - 2 }
  x[5] = 0
  for c in 16..<32 { x[c] = 0 }  // an all-zero group: scale 0.125, codes 0
  let gs = NVFP4Quantizer.globalScale(amax: x.map(abs).max()!)
  let q = x.withUnsafeBufferPointer { NVFP4Quantizer.quantize($0, rows: rows, cols: cols, globalScale: gs) }
  let want = q.dequantized()
  var y = x
  y.withUnsafeMutableBufferPointer {
    Kernels.fakeQuantize($0.baseAddress!, rows: rows, columns: cols, .nvfp4(globalScale: gs))
  }
  for i in 0..<(rows * cols) { #expect(abs(y[i] - want[i]) <= 1e-6 * max(1, abs(want[i])), "element \(i): \(y[i]) vs \(want[i])") }
  #expect(y[16..<32].allSatisfy { $0 == 0 })
}

/// The settings parse and print back; the combinations that make no sense are refused.
@Test func nvfp4InputAttributesRoundTrip() {
  let q = InputQuantization.nvfp4(globalScale: 1234.5)
  var attrs = AttributeDict()
  for (k, v) in q.attributes { attrs[k] = v }
  guard case .success(let back?) = InputQuantization.parse(attrs) else { Issue.record("did not parse"); return }
  #expect(back == q)
  attrs["input_mode"] = .string("dynamic")
  guard case .failure(let e) = InputQuantization.parse(attrs) else { Issue.record("accepted dynamic nvfp4"); return }
  #expect(e.message.contains("local"))
  var int8 = AttributeDict()
  for (k, v) in InputQuantization(kind: .int8, mode: .dynamic, strategy: .token).attributes { int8[k] = v }
  int8["input_global_scale"] = .float(2)
  guard case .failure = InputQuantization.parse(int8) else { Issue.record("accepted a global scale on int8"); return }
}
