import CQoptCodecs
import QoptIR

/// Decoders from ggml block formats to f32 (gguf.md §4).
///
/// Each reads `count` elements (a multiple of the block size) from `src` and writes them to
/// `dst`; the caller checked that `src` holds `count / blockElements × blockBytes` bytes.
/// Time is linear in `count`; nothing is allocated.
public enum GGUFDequant {
  /// Whether `type` can be decoded.
  public static func supports(_ type: GGMLType) -> Bool {
    switch type {
    case .f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q4_K, .q6_K: true
    default: false
    }
  }

  /// Decodes `count` elements of `type`; returns false for an unsupported type.
  @discardableResult
  public static func decode(_ type: GGMLType, _ src: UnsafeRawBufferPointer, count: Int, into dst: UnsafeMutablePointer<Float>) -> Bool {
    switch type {
    case .f32:
      dst.withMemoryRebound(to: UInt8.self, capacity: count * 4) { UnsafeMutableRawPointer($0).copyMemory(from: src.baseAddress!, byteCount: count * 4) }  // safe: count > 0 implies a base address
    case .f16:
      for i in 0..<count { dst[i] = f16ToFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
    case .bf16:
      for i in 0..<count { dst[i] = bf16ToFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
    case .q8_0: q8_0(src, count, dst)
    case .q4_0: q4(src, count, dst, hasMin: false)
    case .q4_1: q4(src, count, dst, hasMin: true)
    case .q4_K: q4_K(src, count, dst)
    case .q6_K: q6_K(src, count, dst)
    default: return false
    }
    return true
  }

  @inline(__always) static func half(_ p: UnsafeRawBufferPointer, _ at: Int) -> Float {
    f16ToFloat(p.loadUnaligned(fromByteOffset: at, as: UInt16.self))
  }

  /// Q8_0: `y[k] = d · qs[k]` (C, `CQoptCodecs`: decoding decides GGUF import time).
  static func q8_0(_ src: UnsafeRawBufferPointer, _ count: Int, _ dst: UnsafeMutablePointer<Float>) {
    guard count >= 32, let base = src.baseAddress else { return }
    qopt_decode_q8_0(base.assumingMemoryBound(to: UInt8.self), count / 32, dst)
  }

  /// Q4_0 (`d · (q − 8)`) and Q4_1 (`d · q + m`): byte j holds element j (low nibble) and j+16.
  static func q4(_ src: UnsafeRawBufferPointer, _ count: Int, _ dst: UnsafeMutablePointer<Float>, hasMin: Bool) {
    guard count >= 32, let base = src.baseAddress else { return }
    qopt_decode_q4(base.assumingMemoryBound(to: UInt8.self), count / 32, dst, hasMin ? 1 : 0)
  }

  /// Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins.
  static func q4_K(_ src: UnsafeRawBufferPointer, _ count: Int, _ dst: UnsafeMutablePointer<Float>) {
    for b in 0..<(count / 256) {
      let base = b * 144
      let d = half(src, base)
      let dmin = half(src, base + 2)
      let sc = base + 4
      let qs = base + 16
      let out = dst + b * 256
      for s in 0..<8 {
        let scale: UInt8
        let mn: UInt8
        if s < 4 {
          scale = src[sc + s] & 63
          mn = src[sc + s + 4] & 63
        } else {
          scale = (src[sc + s + 4] & 0x0F) | ((src[sc + s - 4] >> 6) << 4)
          mn = (src[sc + s + 4] >> 4) | ((src[sc + s] >> 6) << 4)
        }
        let ds = d * Float(scale)
        let dm = dmin * Float(mn)
        let shift = UInt8(4 * (s % 2))
        for i in 0..<32 {
          let q = (src[qs + 32 * (s / 2) + i] >> shift) & 0xF
          out[32 * s + i] = ds * Float(q) - dm
        }
      }
    }
  }

  /// Q6_K: two halves of 128 values, 4+2 bit codes offset by 32, int8 scales per 16.
  static func q6_K(_ src: UnsafeRawBufferPointer, _ count: Int, _ dst: UnsafeMutablePointer<Float>) {
    for b in 0..<(count / 256) {
      let base = b * 210
      let d = half(src, base + 208)
      let out = dst + b * 256
      for h in 0..<2 {
        let ql = base + 64 * h
        let qh = base + 128 + 32 * h
        let o = 128 * h
        for l in 0..<32 {
          let a = src[ql + l]
          let c = src[ql + l + 32]
          let hb = src[qh + l]
          let q0 = Int((a & 0xF) | ((hb & 3) << 4)) - 32
          let q1 = Int((c & 0xF) | (((hb >> 2) & 3) << 4)) - 32
          let q2 = Int((a >> 4) | (((hb >> 4) & 3) << 4)) - 32
          let q3 = Int((c >> 4) | (((hb >> 6) & 3) << 4)) - 32
          func put(_ k: Int, _ q: Int) { out[k] = d * Float(Int8(bitPattern: src[base + 192 + k / 16])) * Float(q) }
          put(o + l, q0)
          put(o + l + 32, q1)
          put(o + l + 64, q2)
          put(o + l + 96, q3)
        }
      }
    }
  }
}
