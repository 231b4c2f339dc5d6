import CQoptCodecs
import QoptIR

/// The block encoders of every `GGMLType.writable` type, bit-identical with llama.cpp's
/// `ggml_quantize_chunk`, plus decoders.
///
/// Q8_0, Q4_0 and Q4_1 without importance weights go through qopt's own vectorised encoders
/// (AVX2 where the CPU has it; bit-identical to the `gguf` package's numpy quantizer and to
/// ggml's `quantize_row_*_ref`, tests compare both): they decide the time of a plain GGUF export.
/// Everything else — the K-quants, Q5_0/Q5_1, IQ4_NL/IQ4_XS, and the importance-weighted
/// encoders — is llama.cpp's code ported verbatim (`qopt_ggml_quantize`).
///
/// Complexity: linear in the row for the 32-blocks; the K-quants search a few dozen candidate
/// scales per sub-block. Memory: none beyond the output.
public enum BlockQuantizers {
  /// Encodes one row of `count` floats (a multiple of `type.blockSize`) as `type` into `out`
  /// (`type.byteCount(elements: count)` bytes). `importance` is nil or `count` per-column
  /// weights (llama-quantize's imatrix row); the types that ignore it (Q8_0, the float types)
  /// do so as ggml does.
  public static func encode(
    _ x: UnsafePointer<Float>, count: Int, as type: GGMLType, into out: UnsafeMutableRawPointer,
    importance: UnsafePointer<Float>? = nil
  ) {
    if type.hasGGMLCodec && (importance != nil || ![.q8_0, .q4_0, .q4_1].contains(type)) {
      let written = qopt_ggml_quantize(Int32(type.rawValue), x, out, 1, Int64(count), importance)
      precondition(
        written == type.byteCount(elements: count),
        "\(type.name): row of \(count) is not whole blocks")
      return
    }
    switch type {
    case .f32:
      out.copyMemory(from: x, byteCount: count * 4)
    case .f16:
      for i in 0..<count {
        out.storeBytes(of: halfBits(x[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self)
      }
    case .bf16:
      for i in 0..<count {
        out.storeBytes(of: floatToBF16(x[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self)
      }
    case .q8_0: qopt_encode_q8_0(x, count / 32, out.assumingMemoryBound(to: UInt8.self))
    case .q4_0: qopt_encode_q4_0(x, count / 32, out.assumingMemoryBound(to: UInt8.self))
    case .q4_1: qopt_encode_q4_1(x, count / 32, out.assumingMemoryBound(to: UInt8.self))
    // The backend writes only the writable types.
    default: preconditionFailure("\(type.name) is not a GGMLType.writable type")
    }
  }

  @inline(__always) package static func storeF16(_ v: Float, _ p: UnsafeMutableRawPointer) {
    p.storeBytes(of: halfBits(v).littleEndian, as: UInt16.self)
  }

  /// f32 → f16 bits, round to nearest even (`floatToF16`, integer-only).
  @inline(__always) public static func halfBits(_ v: Float) -> UInt16 { floatToF16(v) }

  // MARK: - Decoders (what `gguf.quants.dequantize` computes)

  /// Decodes `count` values of `type` from `bytes`.
  public static func decode(_ bytes: UnsafeRawBufferPointer, count: Int, type: GGMLType) -> [Float]
  {
    var y = [Float](repeating: 0, count: count)
    func f16(_ o: Int) -> Float {
      f16ToFloat(bytes.loadUnaligned(fromByteOffset: o, as: UInt16.self))
    }
    switch type {
    case .f32:
      for i in 0..<count {
        y[i] = Float(bitPattern: bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
      }
    case .f16:
      for i in 0..<count { y[i] = f16(2 * i) }
    case .bf16:
      for i in 0..<count {
        y[i] = bf16ToFloat(bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
      }
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
    default:
      y.withUnsafeMutableBufferPointer { out in
        // safe: a writable type with count > 0 (0 elements decode to nothing)
        guard count > 0, type.hasGGMLCodec, let src = bytes.baseAddress else { return }
        let rc = qopt_ggml_dequantize(Int32(type.rawValue), src, out.baseAddress!, 1, Int64(count))
        precondition(rc == 0, "\(type.name) is not a GGMLType.writable type")
      }
    }
    return y
  }
}
