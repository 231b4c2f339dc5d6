import CQoptCodecs
import QoptIR
import QoptPasses
import QoptTestSupport
import Testing

/// The C inner loops of `rtn` (AVX2 body: reciprocal with an FMA correction instead of a
/// division) against their portable bodies, bit for bit, on groups built to hit the hard cases:
/// exact half-integer quotients, quotients one ulp either side of them, huge and tiny values,
/// ±0, NaN and infinities, and scales whose reciprocal is inexact.
private extension SplitMix64 {
  mutating func unit() -> Float { Float(next() >> 40) / Float(1 << 24) }
}

private func adversarialGroup(_ r: inout SplitMix64, scale s: Float, count: Int) -> [Float] {
  (0..<count).map { _ in
    let k = Float(Int(r.next() % 40)) - 20
    switch r.next() % 10 {
    case 0: return (k + 0.5) * s  // a tie after division, when representable
    case 1: return ((k + 0.5) * s).nextUp
    case 2: return ((k + 0.5) * s).nextDown
    case 3: return k * s
    case 4: return [Float.nan, .infinity, -.infinity, 0, -0.0, .leastNonzeroMagnitude, 3e38][Int(r.next() % 7)]
    default: return (r.unit() * 2 - 1) * s * 20
    }
  }
}

@Test func intRoundAVX2MatchesPortable() {
  var r = SplitMix64(seed: 42)
  var mismatches = 0
  for trial in 0..<20_000 {
    let count = 1 + Int(r.next() % 80)
    var s = (r.unit() + 0.01) * Float(sign: .plus, exponent: Int(r.next() % 30) - 20, significand: 1)
    if trial % 7 == 0 { s = -s }  // auto-round's signed symmetric scales
    if trial % 97 == 0 { s = [Float.leastNonzeroMagnitude, 1e-38, 0.1, 3][Int(r.next() % 4)] }
    let w = adversarialGroup(&r, scale: s, count: count)
    let plus = Float(Int(r.next() % 17)) - 8
    let (lo, hi): (Float, Float) = r.next() % 2 == 0 ? (-8, 7) : (0, 255)
    var rl: Float = 0, rh: Float = 0
    qopt_int_range(w, count, &rl, &rh, 1)
    let wmax = max(-rl, rh)
    for before in [true, false] {
      var fast = [Int8](repeating: 0, count: count), slow = [Int8](repeating: 0, count: count)
      if before {
        qopt_int_round_clamp_before(w, count, s, plus, lo, hi, wmax, &fast, 0)
        qopt_int_round_clamp_before(w, count, s, plus, lo, hi, wmax, &slow, 1)
      } else {
        qopt_int_round_clamp_after(w, count, s, plus, lo, hi, wmax, &fast, 0)
        qopt_int_round_clamp_after(w, count, s, plus, lo, hi, wmax, &slow, 1)
      }
      if fast != slow { mismatches += 1 }
    }
    var l0: Float = 0, h0: Float = 0, l1: Float = 0, h1: Float = 0
    qopt_int_range(w, count, &l0, &h0, 0)
    qopt_int_range(w, count, &l1, &h1, 1)
    if l0.bitPattern != l1.bitPattern || h0.bitPattern != h1.bitPattern { mismatches += 1 }
  }
  #expect(mismatches == 0)
}

/// The portable body is the definition: half to even, zero point added before the clamp
/// (compressed-tensors) or after rounding (auto-round), low byte of the code.
@Test func intRoundPortableDefinition() {
  let w: [Float] = [0.5, 1.5, 2.5, -0.5, -1.5, 10, -10, 0.49999997]
  var q = [Int8](repeating: 0, count: w.count)
  qopt_int_round_clamp_before(w, w.count, 1, 0, -8, 7, 10, &q, 1)
  #expect(q == [0, 2, 2, 0, -2, 7, -8, 0])
  qopt_int_round_clamp_after(w, w.count, 1, 8, 0, 15, 10, &q, 1)
  #expect(q == [8, 10, 10, 8, 6, 15, 0, 8])
  qopt_int_round_clamp_before([200], 1, 1, 0, 0, 255, 200, &q, 1)
  #expect(q[0] == Int8(bitPattern: 200))
  qopt_int_round_clamp_before([.nan], 1, 1, 0, -8, 7, 0, &q, 1)  // NaN takes the lower bound
  #expect(q[0] == -8)
}

/// One C call a row (`qopt_int_rtn_sym_row`, rtn's default rule) gives the codes and scales that
/// `IntQuantizer.quantizeGroup` gives group by group — every scale dtype and bit width, rows
/// whose last group is shorter, the adversarial values above — and `quantize` (which uses it)
/// agrees with both.
@Test func rtnSymRowMatchesGroupByGroup() {
  var r = SplitMix64(seed: 9)
  var mismatches = 0
  for trial in 0..<1_200 {
    let bits = 2 + trial % 7
    let st: DType = [.f32, .f16, .bf16][trial % 3]
    let group = [32, 64, 128, 17][(trial / 3) % 4]
    // Up to 20 groups a row: the AVX2 row body takes 8 full groups at a time, then a partial
    // batch, then the short last group.
    let cols = group * (1 + Int(r.next() % 20)) + (trial % 5 == 0 ? 7 : 0)
    let e = Int(r.next() % 30) - 20
    var s = (r.unit() + 0.01) * Float(sign: .plus, exponent: e, significand: 1)
    if trial % 97 == 0 { s = [Float.leastNonzeroMagnitude, 1e-38, 0.1, 3][Int(r.next() % 4)] }
    let w = adversarialGroup(&r, scale: s, count: cols)
    let quantizer = IntQuantizer(
      scheme: IntScheme(bits: bits, symmetric: true, granularity: .group(group), scaleType: st),
      rule: .fullRange)
    let groups = (cols + group - 1) / group
    var refCodes = [Int8](repeating: 0, count: cols)
    var refScales = [Float](repeating: 0, count: groups)
    w.withUnsafeBufferPointer { wb in
      refCodes.withUnsafeMutableBufferPointer { qb in
        for g in 0..<groups {
          let lo = g * group, hi = min(cols, lo + group)
          let slice = UnsafeBufferPointer(rebasing: wb[lo..<hi])
          let out = UnsafeMutableBufferPointer(rebasing: qb[lo..<hi])
          refScales[g] = quantizer.quantizeGroup(slice, into: out).0
        }
      }
    }
    var codes = [Int8](repeating: 0, count: cols)
    var scales = [Float](repeating: 0, count: groups)
    let thresh: Float = st == .f32 ? 1e-8 : roundFloat(1e-5, to: st)
    qopt_int_rtn_sym_row(
      w, cols, group, Int32(bits), st == .f16 ? 1 : st == .bf16 ? 2 : 0, thresh, &codes, &scales, 0)
    if codes != refCodes || scales.map(\.bitPattern) != refScales.map(\.bitPattern) {
      mismatches += 1
    }
    let whole = w.withUnsafeBufferPointer { quantizer.quantize($0, rows: 1, cols: cols) }
    if whole.codes.int8s() != refCodes { mismatches += 1 }
    // 4-bit codes of even-width rows are held two to a byte (unpacked above on reading).
    if (whole.codes.int4Nibbles != nil) != (bits == 4 && cols % 2 == 0) { mismatches += 1 }
  }
  #expect(mismatches == 0)
}
