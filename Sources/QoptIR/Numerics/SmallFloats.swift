/// The 8- and 4-bit float formats NVFP4 and FP8 use, encoded bit-exactly as PyTorch and
/// compressed-tensors do (see docs/formats.md).

// MARK: - FP8 E4M3 ("e4m3fn": bias 7, no infinities, 0x7F/0xFF NaN, largest finite 448)

/// f32 → e4m3fn byte: clamp to ±448 first (the reference clamps before casting), then round
/// to nearest, ties to even. NaN → 0x7F.
@inlinable public func floatToE4M3(_ x: Float) -> UInt8 {
  if x.isNaN { return 0x7F }
  let sign: UInt8 = x.sign == .minus ? 0x80 : 0
  let a = Swift.min(abs(x), 448)
  if a < 0x1p-6 {
    // Subnormal: m · 2^-9 for m in 0…8 (m = 8 is the smallest normal, code 0x08).
    let m = (a * 512).rounded(.toNearestOrEven)
    return sign | UInt8(m)
  }
  var e = Int(a.exponent)
  var m = ((a / Float(sign: .plus, exponent: e, significand: 1) - 1) * 8).rounded(.toNearestOrEven)
  if m == 8 {
    m = 0
    e += 1
  }
  return sign | UInt8((e + 7) << 3) | UInt8(m)
}

// MARK: - FP4 E2M1 (bias 1; magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6)

/// The magnitude each 3-bit E2M1 index stands for.
public let e2m1Magnitudes: [Float] = [0, 0.5, 1, 1.5, 2, 3, 4, 6]

/// f32 → E2M1 nibble (`sign << 3 | index`) after clamping to ±6; ties go to the even
/// mantissa. A negative value that rounds to zero keeps its sign (0x8), as the reference does.
@inlinable public func floatToE2M1(_ x: Float) -> UInt8 {
  let a = abs(x)
  let i: UInt8 =
    a <= 0.25 ? 0 : a < 0.75 ? 1 : a <= 1.25 ? 2 : a < 1.75 ? 3 : a <= 2.5 ? 4 : a < 3.5 ? 5 : a <= 5 ? 6 : 7
  return (x < 0 ? 0x8 : 0) | i
}

/// E2M1 nibble → f32.
@inlinable public func e2m1ToFloat(_ code: UInt8) -> Float {
  let v = e2m1Magnitudes[Int(code & 0x7)]
  return code & 0x8 != 0 ? -v : v
}
