import CQoptCodecs
import Dispatch

/// Writes `count` floats from `src` to `dst` as `dtype` (f32, f16 or bf16; little-endian),
/// each rounded to nearest even (`floatToF16`, `floatToBF16`).
public func storeRounded(
  _ src: UnsafePointer<Float>, count: Int, as dtype: DType, into dst: UnsafeMutableRawPointer
) {
  switch dtype {
  case .f16:
    let o = dst.bindMemory(to: UInt16.self, capacity: count)
    for i in 0..<count { o[i] = floatToF16(src[i]).littleEndian }
  case .bf16:
    let o = dst.bindMemory(to: UInt16.self, capacity: count)
    #if _endian(little)
      qopt_f32_to_bf16(src, count, o, 0)  // floatToBF16 element for element, 8 lanes at a time
    #else
      for i in 0..<count { o[i] = floatToBF16(src[i]).littleEndian }
    #endif
  default:
    precondition(dtype == .f32, "float conversion to \(dtype)")
    dst.copyMemory(from: src, byteCount: count * 4)
  }
}

extension TensorData {
  /// The elements rounded to `dtype` (f32, f16 or bf16) in a new tensor.
  ///
  /// Why not `TensorData(floats: floats(), as:)`: for a tensor decoded on first use (a GGUF
  /// import) that decodes the whole tensor into a fresh f32 array first — 113 MB of page
  /// faults for the 135M model's tied embedding, on one thread, before the first bf16 is
  /// written. Here rows are decoded a chunk at a time on `threads` threads straight into the
  /// result's buffer.
  public func converted(to dtype: DType, threads: Int = 2) -> TensorData {
    let n = count
    let cols = shape.last ?? 1
    guard n > 0, cols > 0, decodesRows else {
      return withF32 { v in
        TensorData.build(dtype: dtype, shape: shape) { out in
          guard let src = v.baseAddress, let dst = out.baseAddress else { return }
          storeRounded(src, count: n, as: dtype, into: dst)
        }
      }
    }
    let rows = n / cols
    let chunkRows = max(1, Self.convertChunkFloats / cols)
    let chunks = (rows + chunkRows - 1) / chunkRows
    let workers = max(1, min(threads, chunks))
    let size = dtype.byteSize
    return TensorData.build(dtype: dtype, shape: shape) { out in
      nonisolated(unsafe) let o = out.baseAddress!  // safe: n > 0
      DispatchQueue.concurrentPerform(iterations: workers) { w in
        let buf = UnsafeMutablePointer<Float>.allocate(capacity: chunkRows * cols)
        defer { buf.deallocate() }
        var c = w
        while c < chunks {
          let r = c * chunkRows
          let m = min(chunkRows, rows - r)
          if !decodeRows(r..<(r + m), into: buf) {
            // Decoded whole meanwhile (another reader): take the rows from those bytes.
            // safe: n > 0, so the base address is non-nil.
            withF32 { buf.update(from: $0.baseAddress! + r * cols, count: m * cols) }
          }
          storeRounded(buf, count: m * cols, as: dtype, into: o + r * cols * size)
          c += workers
        }
      }
    }
  }

  /// Floats one converting thread decodes at a time (256 KiB: stays in L2).
  static let convertChunkFloats = 64 << 10
}
