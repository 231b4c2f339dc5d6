import CQoptCodecs
import QoptIR
import QoptTestSupport
import Testing

/// The bf16 conversion behind every bf16 output (`storeRounded`; AVX2 body where the CPU has
/// it) is `floatToBF16` element for element: round to nearest even at exact ties and one ulp
/// either side, the largest finite values rounding to infinity, infinities, ±0, subnormals, and
/// NaNs of both signs with payloads in the low bits only (quieted, not turned into infinity).
@Test func bf16BodiesMatchFloatToBF16() {
  var r = SplitMix64(seed: 5)
  var values: [Float] = [
    0, -0.0, 1, -1, .infinity, -.infinity, .nan, -.nan, .greatestFiniteMagnitude,
    -.greatestFiniteMagnitude, .leastNonzeroMagnitude, .leastNormalMagnitude,
    Float(bitPattern: 0x7F80_0001), Float(bitPattern: 0xFF80_0001),
    Float(bitPattern: 0x7FC0_0000), Float(bitPattern: 0x7F7F_8000),
  ]
  for _ in 0..<5000 {
    let b = UInt32(truncatingIfNeeded: r.next())
    switch r.next() % 4 {
    case 0: values.append(Float(bitPattern: (b & 0xFFFF_0000) | 0x8000))  // an exact tie
    case 1: values.append(Float(bitPattern: (b & 0xFFFF_0000) | 0x7FFF))
    case 2: values.append(Float(bitPattern: (b & 0xFFFF_0000) | 0x8001))
    default: values.append(Float(bitPattern: b))
    }
  }
  let expected = values.map(floatToBF16)
  for n in [values.count, 15, 16, 17, 1] {
    var fast = [UInt16](repeating: 0, count: n), slow = [UInt16](repeating: 0, count: n)
    qopt_f32_to_bf16(values, n, &fast, 0)
    qopt_f32_to_bf16(values, n, &slow, 1)
    #expect(fast == Array(expected.prefix(n)))
    #expect(slow == Array(expected.prefix(n)))
  }
  // storeRounded, which the writers call, gives the same bytes.
  var out = [UInt16](repeating: 0, count: values.count)
  values.withUnsafeBufferPointer { v in
    out.withUnsafeMutableBytes {
      storeRounded(v.baseAddress!, count: v.count, as: .bf16, into: $0.baseAddress!)
    }  // safe: non-empty
  }
  #expect(out == expected)
}
