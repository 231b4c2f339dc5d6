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
    case .f32, .f16, .bf16: true
    default: type.hasGGMLCodec
    }
  }

  /// Decodes `count` elements of `type`; returns false for an unsupported type.
  @discardableResult
  public static func decode(
    _ type: GGMLType, _ src: UnsafeRawBufferPointer, count: Int,
    into dst: UnsafeMutablePointer<Float>
  ) -> Bool {
    switch type {
    case .f32:
      dst.withMemoryRebound(to: UInt8.self, capacity: count * 4) {
        UnsafeMutableRawPointer($0).copyMemory(from: src.baseAddress!, byteCount: count * 4)
      }  // safe: count > 0 implies a base address
    case .f16:
      for i in 0..<count {
        dst[i] = f16ToFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
      }
    case .bf16:
      for i in 0..<count {
        dst[i] = bf16ToFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
      }
    case .q8_0: q8_0(src, count, dst)
    case .q4_0: q4(src, count, dst, hasMin: false)
    case .q4_1: q4(src, count, dst, hasMin: true)
    default:
      // Every other writable type: ggml's own `to_float` (CQoptCodecs).
      guard type.hasGGMLCodec else { return false }
      guard count > 0, let base = src.baseAddress else { return true }
      return qopt_ggml_dequantize(Int32(type.rawValue), base, dst, 1, Int64(count)) == 0
    }
    return true
  }

  @inline(__always) static func half(_ p: UnsafeRawBufferPointer, _ at: Int) -> Float {
    f16ToFloat(p.loadUnaligned(fromByteOffset: at, as: UInt16.self))
  }

  /// Q8_0: `y[k] = d · qs[k]` (C, `CQoptCodecs`: decoding decides GGUF import time).
  static func q8_0(_ src: UnsafeRawBufferPointer, _ count: Int, _ dst: UnsafeMutablePointer<Float>)
  {
    guard count >= 32, let base = src.baseAddress else { return }
    qopt_decode_q8_0(base.assumingMemoryBound(to: UInt8.self), count / 32, dst)
  }

  /// Q4_0 (`d · (q − 8)`) and Q4_1 (`d · q + m`): byte j holds element j (low nibble) and j+16.
  static func q4(
    _ src: UnsafeRawBufferPointer, _ count: Int, _ dst: UnsafeMutablePointer<Float>, hasMin: Bool
  ) {
    guard count >= 32, let base = src.baseAddress else { return }
    qopt_decode_q4(base.assumingMemoryBound(to: UInt8.self), count / 32, dst, hasMin ? 1 : 0)
  }
}
