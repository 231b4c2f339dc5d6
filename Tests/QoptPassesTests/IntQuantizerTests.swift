import QoptIR
import QoptPasses
import Testing

func quantize(_ w: [Float], rows: Int = 1, bits: Int = 4, sym: Bool = true, group: Granularity, scale: DType, rule: ScaleRule)
  -> QuantizedTensor
{
  let q = IntQuantizer(scheme: IntScheme(bits: bits, symmetric: sym, granularity: group, scaleType: scale), rule: rule)
  return w.withUnsafeBufferPointer { q.quantize($0, rows: rows, cols: w.count / rows) }
}

let arGroup: [Float] = [0.12, -0.31, 0.05, 0.44, -0.27, 0.18, -0.09, 0.36]

/// autoround.md §12.1: full-range symmetric RTN, fp32 and fp16 scales.
@Test func fullRangeSymmetricMatchesAutoRound() {
  let q = quantize(arGroup, group: .group(8), scale: .f32, rule: .fullRange)
  #expect(q.scale.floats() == [Float(-0.44) / 8])
  #expect(q.codes.int8s() == [-2, 6, -1, -8, 5, -3, 2, -7])
  let dq = q.dequantized()
  let expected: [Float] = [0.11, -0.33, 0.055, 0.44, -0.275, 0.165, -0.11, 0.385]
  for (a, b) in zip(dq, expected) { #expect(abs(a - b) < 1e-6) }
  let h = quantize(arGroup, group: .group(8), scale: .f16, rule: .fullRange)
  #expect(h.scale.floats() == [-0.05499267578125])
  #expect(h.scale.dtype == .f16)
  // For -w the scale is +0.055 and the codes are identical.
  let n = quantize(arGroup.map { -$0 }, group: .group(8), scale: .f32, rule: .fullRange)
  #expect(n.scale.floats() == [Float(0.44) / 8])
  #expect(n.codes.int8s() == [-2, 6, -1, -8, 5, -3, 2, -7])
}

/// autoround.md §12.3: asymmetric RTN (codes 0…15 around zp 6; stored shifted by −8).
@Test func fullRangeAsymmetricMatchesAutoRound() {
  let q = quantize(arGroup, sym: false, group: .group(8), scale: .f32, rule: .fullRange)
  #expect(abs(q.scale.floats()[0] - 0.05) < 1e-7)
  #expect(q.zeroPoint?.int8s() == [6 - 8])
  #expect(q.codes.int8s().map { Int($0) + 8 } == [8, 0, 7, 15, 1, 10, 4, 13])
  let expected: [Float] = [0.10, -0.30, 0.05, 0.45, -0.25, 0.20, -0.10, 0.35]
  for (a, b) in zip(q.dequantized(), expected) { #expect(abs(a - b) < 1e-6) }
}

/// compressed-tensors.md §7.1: amax/7.5 rule; −7.5 rounds to the even −8, +7.5 clamps to 7.
@Test func minmaxSymmetricMatchesCompressedTensors() {
  let w: [Float] = [0.125, -0.25, 0.375, -0.5, 0.625, -0.75, 0.875, -0.9375]
  let q = quantize(w, group: .group(8), scale: .f32, rule: .minmax)
  #expect(q.scale.floats() == [0.125])
  #expect(q.codes.int8s() == [1, -2, 3, -4, 5, -6, 7, -8])
  var w2 = w
  w2[6] = 0.9375
  w2[7] = -0.875
  #expect(quantize(w2, group: .group(8), scale: .f32, rule: .minmax).codes.int8s() == [1, -2, 3, -4, 5, -6, 7, -7])
}

/// compressed-tensors.md §7.2: a full 128-element group, fp32 and bf16 scales; W8A16 codes.
@Test func minmaxFullGroupMatchesCompressedTensors() {
  let row: [Float] = (0..<128).map { Float(((37 * $0) % 101) - 50) / 64 }
  let q = quantize(row, group: .group(128), scale: .f32, rule: .minmax)
  #expect(q.scale.floats()[0].bitPattern == 0x3DD5_5555)
  let codes = q.codes.int8s()
  #expect(Array(codes[0..<16]) == [-8, -2, 4, -6, 0, 5, -4, 1, 7, -3, 3, -7, -2, 4, -6, 0])
  #expect(codes.reduce(0) { $0 + Int($1) } == -13)
  #expect(codes.filter { $0 == -8 }.count == 2)
  #expect(codes.filter { $0 == 7 }.count == 9)
  let b = quantize(row, group: .group(128), scale: .bf16, rule: .minmax)
  #expect(b.scale.floats() == [0.10400390625])
  #expect(b.codes.int8s() == codes)
  let dq = q.dequantized()
  let expected: [Float] = [-0.8333333, -0.2083333, 0.4166667, -0.625]
  for (a, e) in zip(dq.prefix(4), expected) { #expect(abs(a - e) < 1e-6) }
  let w8 = quantize(row, bits: 8, group: .group(128), scale: .f32, rule: .minmax)
  #expect(abs(w8.scale.floats()[0] - 0.006127451) < 1e-9)
  #expect(Array(w8.codes.int8s().prefix(4)) == [-128, -33, 61, -102])
}

/// compressed-tensors.md §8.6: asymmetric int4 with a zero point of −8.
@Test func minmaxAsymmetricMatchesCompressedTensors() {
  let w: [Float] = (0..<8).map { Float($0) / 10 }
  let q = quantize(w, sym: false, group: .group(8), scale: .f32, rule: .minmax)
  #expect(abs(q.scale.floats()[0] - 0.0466667) < 1e-6)
  #expect(q.zeroPoint?.int8s() == [-8])
  #expect(q.codes.int8s() == [-8, -6, -4, -2, 1, 3, 5, 7])
}

/// A group size that does not divide the row leaves a short last group, whose scale comes
/// from its own elements only (as auto-round's zero padding does).
@Test func shortLastGroupUsesItsOwnRange() {
  let row: [Float] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, 0.5]
  let q = quantize(row, group: .group(5), scale: .f32, rule: .fullRange)
  #expect(q.scale.shape == [1, 3])
  let expected: [Float] = [-5.0 / 8, -10.0 / 8, -100.0 / 8]
  #expect(q.scale.floats() == expected)
  #expect(q.codes.int8s()[10] == -8)
}

@Test func perChannelAndPerTensorScaleShapes() {
  let w: [Float] = [1, -2, 3, -4, 5, -6]
  let c = quantize(w, rows: 2, group: .channel, scale: .f32, rule: .minmax)
  #expect(c.scale.shape == [2, 1])
  let expected: [Float] = [3 / 7.5, 6 / 7.5]
  #expect(c.scale.floats() == expected)
  let t = quantize(w, rows: 2, group: .tensor, scale: .f32, rule: .minmax)
  #expect(t.scale.shape == [1])
  let expectedT: [Float] = [6 / 7.5]
  #expect(t.scale.floats() == expectedT)
}

@Test func zeroGroupsGetTheThresholdScale() {
  let z = [Float](repeating: 0, count: 8)
  let fr = quantize(z, group: .group(8), scale: .f16, rule: .fullRange)
  #expect(fr.scale.floats() == [f16ToFloat(floatToF16(1e-5))])
  #expect(fr.codes.int8s() == [Int8](repeating: 0, count: 8))
  let mm = quantize(z, group: .group(8), scale: .bf16, rule: .minmax)
  #expect(mm.scale.floats() == [0.0078125])
}

@Test(arguments: 2...8)
func codesStayInRangeAndErrorIsBounded(bits: Int) {
  var rng = SystemRandomNumberGenerator()
  let w: [Float] = (0..<256).map { _ in Float.random(in: -1...1, using: &rng) }
  for rule in ScaleRule.allCases {
    for sym in [true, false] {
      let q = quantize(w, rows: 2, bits: bits, sym: sym, group: .group(32), scale: .f32, rule: rule)
      let s = IntScheme(bits: bits, symmetric: sym, granularity: .group(32), scaleType: .f32)
      #expect(q.codes.int8s().allSatisfy { Int($0) >= s.qmin && Int($0) <= s.qmax })
      let dq = q.dequantized()
      let scales = q.scale.floats()
      for i in 0..<w.count {
        let step = abs(scales[i / 32])
        // Within half a step inside the range; up to one step where the code clamps (the side
        // opposite −2^(b−1) in full-range, and zero-point rounding in asymmetric schemes).
        #expect(abs(dq[i] - w[i]) <= step * 1.0001 + 1e-6, "bits \(bits) \(rule) sym \(sym) at \(i)")
      }
    }
  }
}
