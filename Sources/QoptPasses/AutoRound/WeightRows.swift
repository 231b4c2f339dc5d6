import QoptIR

/// The float weights a tunable linear rounds, read a row at a time: its own f32 copy, or the
/// checkpoint's bf16/f16 tensor (mapped) decoded into one row buffer on each read.
///
/// Why: a tuned 8B block's weights are 872 MB as f32 but 436 MB as the mapped bf16 the
/// checkpoint holds, and only pages, which `releasePages()` drops after each pass. The decode
/// is exact (bf16 and f16 are subsets of f32), so the rounding sees the same values as from
/// an f32 copy.
package final class WeightRows {
  package let rows: Int, cols: Int
  private let floats: [Float]
  private let half: TensorData?
  private let row: UnsafeMutablePointer<Float>

  /// Rows of an f32 copy.
  package init(floats: [Float], rows: Int, cols: Int) {
    precondition(floats.count == rows * cols, "weights are rows × cols")
    self.floats = floats
    self.rows = rows
    self.cols = cols
    half = nil
    row = .allocate(capacity: 1)
  }

  /// Rows decoded on read from a bf16/f16 tensor, or from the bf16/f16 tensor an f32 one is
  /// converted from on use (`TensorData.conversionSource`); nil for any other tensor.
  package init?(decoding t: TensorData) {
    guard t.shape.count == 2 else { return nil }
    let source = t.conversionSource ?? t
    guard source.dtype == .bf16 || source.dtype == .f16, source.shape == t.shape else {
      return nil
    }
    floats = []
    half = source
    rows = t.shape[0]
    cols = t.shape[1]
    row = .allocate(capacity: max(cols, 1))
  }

  deinit { row.deallocate() }

  /// Calls `body` with row `r`'s `cols` floats (valid inside `body` only).
  @inline(__always)
  package func withRow<R>(_ r: Int, _ body: (UnsafePointer<Float>) -> R) -> R {
    guard let half else {
      return floats.withUnsafeBufferPointer {
        precondition((r + 1) * cols <= $0.count, "row inside the weights")
        return body($0.baseAddress! + r * cols)  // safe: checked above
      }
    }
    let (n, dst, bf16) = (cols, row, half.dtype == .bf16)
    half.withUnsafeBytes { raw in
      precondition(2 * (r + 1) * n <= raw.count, "row inside the weights")
      let src = raw.baseAddress! + 2 * r * n  // safe: checked above
      for i in 0..<n {
        let bits = src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)
        dst[i] = bf16 ? bf16ToFloat(bits) : f16ToFloat(bits)
      }
    }
    return body(UnsafePointer(dst))
  }

  /// Drops the mapped pages the reads paged in (read again from the page cache next time).
  package func releasePages() { half?.releasePages() }
}
