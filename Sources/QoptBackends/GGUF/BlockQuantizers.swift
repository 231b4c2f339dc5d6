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
      let o = out.bindMemory(to: UInt16.self, capacity: count)
      for i in 0..<count { o[i] = Float16(x[i]).bitPattern.littleEndian }
    case .bf16:
      let o = out.bindMemory(to: UInt16.self, capacity: count)
      for i in 0..<count { o[i] = floatToBF16(x[i]).littleEndian }
    case .q8_0:
      for b in 0..<(count / 32) { q8_0(x + 32 * b, out + 34 * b) }
    case .q4_0:
      for b in 0..<(count / 32) { q4_0(x + 32 * b, out + 18 * b) }
    case .q4_1:
      for b in 0..<(count / 32) { q4_1(x + 32 * b, out + 20 * b) }
    }
  }

  @inline(__always) static func storeF16(_ v: Float, _ p: UnsafeMutableRawPointer) {
    p.storeBytes(of: Float16(v).bitPattern.littleEndian, as: UInt16.self)
  }

  /// `d = amax/127`, `q = round_half_away(x · (1/d))`, d stored as f16.
  @inline(__always) static func q8_0(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer) {
    var amax: Float = 0
    for i in 0..<32 { amax = Swift.max(amax, abs(x[i])) }
    let d = amax / 127
    let id: Float = d == 0 ? 0 : 1 / d
    storeF16(d, out)
    let qs = (out + 2).bindMemory(to: Int8.self, capacity: 32)
    for i in 0..<32 { qs[i] = Int8((x[i] * id).rounded(.toNearestOrAwayFromZero)) }
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
    let qs = (out + 2).bindMemory(to: UInt8.self, capacity: 16)
    for j in 0..<16 {
      let a = UInt8(Swift.min(15, (x[j] * id + 8.5).rounded(.towardZero)))
      let b = UInt8(Swift.min(15, (x[j + 16] * id + 8.5).rounded(.towardZero)))
      qs[j] = a | (b << 4)
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
    let qs = (out + 4).bindMemory(to: UInt8.self, capacity: 16)
    for j in 0..<16 {
      let a = UInt8(Swift.min(15, ((x[j] - lo) * id + 0.5).rounded(.towardZero)))
      let b = UInt8(Swift.min(15, ((x[j + 16] - lo) * id + 0.5).rounded(.towardZero)))
      qs[j] = a | (b << 4)
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
