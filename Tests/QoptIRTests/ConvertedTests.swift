import QoptIR
import QoptTestSupport
import Testing

/// `TensorData.converted(to:threads:)`, how the compressed-tensors backend writes a float
/// tensor in another dtype: the bytes of the eager `TensorData(floats:as:)`, whether the tensor
/// is decoded row by row on first use (any thread count, chunks that do not divide the rows,
/// never decoded whole) or held in memory.
@Suite struct ConvertedTests {
  /// Values across the f16 range, with NaN, infinities, −0, an f16 overflow and subnormals.
  static func values(_ n: Int) -> [Float] {
    var rng = SplitMix64(seed: 11)
    let special: [Float] = [.nan, .infinity, -0.0, 65520, 1e-6, -3e-8]
    return (0..<n).map { i in
      i % 97 < special.count ? special[i % 97] : Float(rng.normal()) * Float(1 << (i % 13)) / 64
    }
  }

  @Test(arguments: [DType.bf16, .f16, .f32])
  func matchesTheEagerConversion(_ dtype: DType) {
    // 301 rows of 640: several chunks (`convertChunkFloats` / 640 rows each), the last partial.
    let (rows, cols) = (301, 640)
    let v = Self.values(rows * cols)
    let lazy = TensorData(
      deferredF32: [rows, cols],
      fill: { raw in v.withUnsafeBytes { raw.copyMemory(from: $0) } },
      rows: { range, dst in
        v.withUnsafeBufferPointer {
          dst.update(from: $0.baseAddress! + range.lowerBound * cols, count: range.count * cols)
        }
      })
    #expect(lazy.decodesRows)
    let eager = TensorData(floats: v, shape: [rows, cols], as: dtype)
    for threads in [1, 2, 3] {
      let c = lazy.converted(to: dtype, threads: threads)
      #expect(c.dtype == dtype && c.shape == [rows, cols])
      #expect(c.isIdentical(to: eager), "threads \(threads)")
    }
    #expect(lazy.isDeferred)  // streamed: never decoded whole
    #expect(TensorData(floats: v, shape: [rows, cols]).converted(to: dtype).isIdentical(to: eager))
  }
}
