/// A plain (unquantized) element type.
public enum DType: String, Hashable, Sendable, CaseIterable {
  case f32, f16, bf16, f8e4m3, i64, i32, i8, u8

  /// Bytes per element.
  public var byteSize: Int {
    switch self {
    case .f32, .i32: 4
    case .f16, .bf16: 2
    case .i64: 8
    case .f8e4m3, .i8, .u8: 1
    }
  }

  public var isFloat: Bool {
    switch self {
    case .f32, .f16, .bf16, .f8e4m3: true
    default: false
    }
  }

  /// The dtype name safetensors uses (`F32`, `BF16`, …).
  public var safetensorsName: String {
    switch self {
    case .f32: "F32"
    case .f16: "F16"
    case .bf16: "BF16"
    case .f8e4m3: "F8_E4M3"
    case .i64: "I64"
    case .i32: "I32"
    case .i8: "I8"
    case .u8: "U8"
    }
  }

  public init?(safetensorsName: String) {
    guard let t = DType.allCases.first(where: { $0.safetensorsName == safetensorsName }) else {
      return nil
    }
    self = t
  }
}

// MARK: - Exact conversions between f32 and the 16-bit float formats

/// bf16 bits → f32 (exact: bf16 is the top half of an f32).
@inlinable public func bf16ToFloat(_ bits: UInt16) -> Float {
  Float(bitPattern: UInt32(bits) << 16)
}

/// f32 → bf16 bits, rounding to nearest even as PyTorch does; NaN stays a quiet NaN.
@inlinable public func floatToBF16(_ x: Float) -> UInt16 {
  let b = x.bitPattern
  if x.isNaN { return UInt16(truncatingIfNeeded: (b >> 16) | 0x40) }
  let rounding = UInt32(0x7FFF) + ((b >> 16) & 1)
  return UInt16(truncatingIfNeeded: (b &+ rounding) >> 16)
}

/// f16 bits → f32 (exact; NaN payloads kept). Integer-only: on x86-64 builds without F16C,
/// `Float(Float16)` is a library call per element, which dominated GGUF decoding.
@inlinable public func f16ToFloat(_ bits: UInt16) -> Float {
  let sign = UInt32(bits & 0x8000) << 16
  let em = UInt32(bits & 0x7FFF)
  if em >= 0x7C00 { return Float(bitPattern: sign | 0x7F80_0000 | ((em & 0x3FF) << 13)) }  // inf, NaN
  if em >= 0x0400 { return Float(bitPattern: sign | ((em << 13) &+ 0x3800_0000)) }  // normal
  // Zero or subnormal: em · 2^-24, exact in f32.
  return Float(bitPattern: sign | (Float(em) * 0x1p-24).bitPattern)
}

/// f32 → f16 bits, rounding to nearest even (IEEE conversion), overflow to infinity, NaN made
/// quiet with its top payload bits (as the F16C instruction does). Integer-only: on x86-64
/// builds without F16C, `Float16(x)` is a library call per element (`__truncsfhf2`), which
/// cost a third of a compressed-tensors emit's bf16/f16 conversions and scale rounding.
@inlinable public func floatToF16(_ v: Float) -> UInt16 {
  var x = v.bitPattern
  let sign = UInt16(truncatingIfNeeded: (x >> 16) & 0x8000)
  x &= 0x7FFF_FFFF
  if x >= 0x4780_0000 {  // ≥ 65536, inf or NaN
    if x > 0x7F80_0000 {
      return sign | 0x7E00 | UInt16(truncatingIfNeeded: (x & 0x007F_FFFF) >> 13)
    }
    return sign | 0x7C00
  }
  if x < 0x3880_0000 {  // below the smallest normal f16 (2^-14): denormal or zero
    // Adding 0.5 rounds the value onto the denormal grid with the FPU's own RNE.
    let f = Float(bitPattern: x) + Float(bitPattern: 0x3F00_0000)
    return sign | UInt16(truncatingIfNeeded: f.bitPattern &- 0x3F00_0000)
  }
  let odd = (x >> 13) & 1
  x = x &+ 0xC800_0FFF &+ odd  // rebias the exponent (−112 << 23) and round
  return sign | UInt16(truncatingIfNeeded: x >> 13)
}

/// Rounds `x` to the nearest value representable in `dtype` and returns it as f32.
@inlinable public func roundFloat(_ x: Float, to dtype: DType) -> Float {
  switch dtype {
  case .f16: f16ToFloat(floatToF16(x))
  case .bf16: bf16ToFloat(floatToBF16(x))
  default: x
  }
}
