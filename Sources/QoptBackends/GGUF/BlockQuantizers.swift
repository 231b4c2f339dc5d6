import QoptIR

/// llama.cpp's reference block quantizers for Q8_0, Q4_0 and Q4_1, bit-identical to the `gguf`
/// package's `gguf.quants.quantize` (numpy, f32 arithmetic throughout; reference/gguf.md §4),
/// plus their decoders.
///
/// Complexity: two passes over each 32-value block. Memory: none beyond the output.
public enum BlockQuantizers {
  /// Encodes `count` floats (a multiple of 32 for the block types) as `type` into `out`
  /// (`type.byteCount(elements: count)` bytes).
  public static func encode(_ x: UnsafePointer<Float>, count: Int, as type: GGMLType, into out: UnsafeMutableRawPointer) {
    switch type {
    case .f32:
      out.copyMemory(from: x, byteCount: count * 4)
    case .f16:
      for i in 0..<count { out.storeBytes(of: halfBits(x[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
    case .bf16:
      for i in 0..<count { out.storeBytes(of: floatToBF16(x[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
    case .q8_0:
      for b in 0..<(count / 32) { q8_0(x + 32 * b, out + 34 * b) }
    case .q4_0:
      for b in 0..<(count / 32) { q4_0(x + 32 * b, out + 18 * b) }
    case .q4_1:
      for b in 0..<(count / 32) { q4_1(x + 32 * b, out + 20 * b) }
    }
  }

  @inline(__always) static func storeF16(_ v: Float, _ p: UnsafeMutableRawPointer) {
    p.storeBytes(of: halfBits(v).littleEndian, as: UInt16.self)
  }

  /// f32 → f16 bits, round to nearest even, overflow to infinity, NaN made quiet with its top
  /// payload bits (as the F16C instruction does). Integer-only, so it stays fast on
  /// x86-64 builds without F16C, where `Float16(x)` is a library call.
  @inline(__always) public static func halfBits(_ v: Float) -> UInt16 {
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

  /// `floor(t)` for 0 ≤ t < 2^22, as an integer and a float, without a conversion that can
  /// trap: adding 2^23 rounds t to an integer (ties to even) in the low mantissa bits; one step
  /// back when that rounded up. Branch-free, so the block loops vectorize.
  @inline(__always) static func floorSmall(_ t: Float) -> (Int32, Float) {
    let magic: Float = 8_388_608
    let m = t + magic
    var r = Int32(bitPattern: m.bitPattern &- magic.bitPattern)
    var rf = m - magic
    let up = rf > t
    r &-= up ? 1 : 0
    rf -= up ? 1 : 0
    return (r, rf)
  }

  /// Rounds half away from zero as numpy's `np_roundf` (`floor(a) + floor(2·(a − floor a))`,
  /// signed); |v| ≤ 127 here, anything else (NaN) becomes 0.
  @inline(__always) static func roundHalfAway(_ v: Float) -> Int32 {
    let a0 = abs(v)
    let a = a0 < 1024 ? a0 : 0
    let (fl, flf) = floorSmall(a)
    let b = fl &+ (a - flf >= 0.5 ? 1 : 0)
    return v < 0 ? 0 &- b : b
  }

  /// `min(15, trunc(t))` for t ≥ 0 (0 for NaN).
  @inline(__always) static func nibble(_ t: Float) -> UInt8 {
    UInt8(truncatingIfNeeded: floorSmall(t > 0 ? Swift.min(t, 15.5) : 0).0)
  }

  /// `d = amax/127`, `q = round_half_away(x · (1/d))`, d stored as f16.
  @inline(__always) static func q8_0(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer) {
    var amax: Float = 0
    for i in 0..<32 {
      let a = abs(x[i])
      amax = a > amax ? a : amax
    }
    let d = amax / 127
    let id: Float = d == 0 ? 0 : 1 / d
    storeF16(d, out)
    for i in 0..<32 { out.storeBytes(of: Int8(truncatingIfNeeded: roundHalfAway(x[i] * id)), toByteOffset: 2 + i, as: Int8.self) }
  }

  /// `d = max/−8` with `max` the first element of largest magnitude,
  /// `q = min(15, trunc(x · (1/d) + 8.5))`; element j low nibble, j+16 high nibble.
  @inline(__always) static func q4_0(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer) {
    // numpy's argmax: the first index of the largest magnitude (x[0] when all are zero).
    var amax = abs(x[0])
    var maxv = x[0]
    for i in 1..<32 where abs(x[i]) > amax {
      amax = abs(x[i])
      maxv = x[i]
    }
    let d = maxv / -8
    let id: Float = d == 0 ? 0 : 1 / d
    storeF16(d, out)
    for j in 0..<16 {
      // x·id + 8.5 lies in [0.5, 16.5] since |x·id| ≤ 8.
      let a = nibble(x[j] * id + 8.5)
      let b = nibble(x[j + 16] * id + 8.5)
      out.storeBytes(of: a | (b << 4), toByteOffset: 2 + j, as: UInt8.self)
    }
  }

  /// `m = min`, `d = (max − min)/15`, `q = min(15, trunc((x − m) · (1/d) + 0.5))`.
  @inline(__always) static func q4_1(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer) {
    var lo = x[0]
    var hi = x[0]
    for i in 1..<32 {
      lo = Swift.min(lo, x[i])
      hi = Swift.max(hi, x[i])
    }
    let d = (hi - lo) / 15
    let id: Float = d == 0 ? 0 : 1 / d
    storeF16(d, out)
    storeF16(lo, out + 2)
    for j in 0..<16 {
      let a = nibble((x[j] - lo) * id + 0.5)
      let b = nibble((x[j + 16] - lo) * id + 0.5)
      out.storeBytes(of: a | (b << 4), toByteOffset: 4 + j, as: UInt8.self)
    }
  }

  // MARK: - Decoders (what `gguf.quants.dequantize` computes)

  /// Decodes `count` values of `type` from `bytes`.
  public static func decode(_ bytes: UnsafeRawBufferPointer, count: Int, type: GGMLType) -> [Float] {
    var y = [Float](repeating: 0, count: count)
    func f16(_ o: Int) -> Float { f16ToFloat(bytes.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
    switch type {
    case .f32:
      for i in 0..<count { y[i] = Float(bitPattern: bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
    case .f16:
      for i in 0..<count { y[i] = f16(2 * i) }
    case .bf16:
      for i in 0..<count { y[i] = bf16ToFloat(bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
    case .q8_0:
      for b in 0..<(count / 32) {
        let d = f16(34 * b)
        for i in 0..<32 { y[32 * b + i] = Float(Int8(bitPattern: bytes[34 * b + 2 + i])) * d }
      }
    case .q4_0:
      for b in 0..<(count / 32) {
        let d = f16(18 * b)
        for j in 0..<16 {
          let q = bytes[18 * b + 2 + j]
          y[32 * b + j] = d * Float(Int(q & 0xF) - 8)
          y[32 * b + j + 16] = d * Float(Int(q >> 4) - 8)
        }
      }
    case .q4_1:
      for b in 0..<(count / 32) {
        let d = f16(20 * b)
        let m = f16(20 * b + 2)
        for j in 0..<16 {
          let q = bytes[20 * b + 4 + j]
          y[32 * b + j] = d * Float(q & 0xF) + m
          y[32 * b + j + 16] = d * Float(q >> 4) + m
        }
      }
    }
    return y
  }
}
