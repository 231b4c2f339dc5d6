import QoptIR
import Testing

/// f16/bf16 ⇄ f32 conversions are exact to the bit.
@Test func everyF16RoundTripsThroughF32() {
  for bits in 0...UInt16.max {
    let f = f16ToFloat(bits)
    if f.isNaN { #expect(floatToF16(f) & 0x7C00 == 0x7C00); continue }
    #expect(floatToF16(f) == bits, "f16 bits \(bits)")
  }
}

/// The integer-only f16 decoder agrees with the IEEE conversion on every value (NaNs stay NaN
/// with their payload).
@Test func f16DecoderMatchesIEEEConversion() {
  for bits in 0...UInt16.max {
    let ours = f16ToFloat(bits)
    let ieee = Float(Float16(bitPattern: bits))
    if ieee.isNaN {
      #expect(ours.isNaN && (ours.bitPattern >> 13) & 0x3FF == UInt32(bits & 0x3FF), "f16 bits \(bits)")
    } else {
      #expect(ours.bitPattern == ieee.bitPattern, "f16 bits \(bits)")
    }
  }
}

@Test func everyBF16RoundTripsThroughF32() {
  for bits in 0...UInt16.max {
    let f = bf16ToFloat(bits)
    if f.isNaN { #expect(floatToBF16(f) & 0x7F80 == 0x7F80); continue }
    #expect(floatToBF16(f) == bits, "bf16 bits \(bits)")
  }
}

let bf16Cases: [(Float, UInt16)] = [
  (1.0, 0x3F80), (-2.0, 0xC000), (0.5, 0x3F00),
  // Ties round to even: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7.
  (Float(bitPattern: 0x3F80_8000), 0x3F80), (Float(bitPattern: 0x3F81_8000), 0x3F82),
  (Float(bitPattern: 0x3F80_8001), 0x3F81),
]

@Test(arguments: bf16Cases)
func bf16RoundsToNearestEven(_ x: Float, _ expected: UInt16) {
  #expect(floatToBF16(x) == expected)
}

@Test func f16RoundsToNearestEvenAndSaturates() {
  #expect(floatToF16(1.0) == 0x3C00)
  #expect(floatToF16(65520) == 0x7C00)  // rounds up to infinity, as IEEE conversion does
  #expect(floatToF16(-0.05499267578125) == 0xAB0A || f16ToFloat(floatToF16(-0.055)) == -0.05499267578125)
  #expect(f16ToFloat(floatToF16(-0.055)) == -0.05499267578125)  // autoround.md §12.1
}

@Test func e4m3DecodesTheReferenceValues() {
  #expect(e4m3ToFloat(0x7E) == 448)
  #expect(e4m3ToFloat(0x6C) == 96)
  #expect(e4m3ToFloat(0x20) == 0.125)
  #expect(e4m3ToFloat(0x01) == 0.001953125)  // smallest subnormal 2^-9
  #expect(e4m3ToFloat(0x7F).isNaN)
}
