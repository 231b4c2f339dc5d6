import QoptIR
import Testing

/// Deferred tensors as out-of-core imports use them (docs/scale-out.md, "Peak RSS by path on
/// the 8B checkpoint"): `releasePages()` drops the decoded copy and calls `releaseInput` (a GGUF
/// tensor's mapped pages, which row-by-row readers page in), and deferred i8 codes (a
/// compressed-tensors import) are made on first use and made again, the same, after a release.
@Suite struct DeferredReleaseTests {
  /// Counts calls; touched from one thread only.
  final class Counter: @unchecked Sendable { var calls = 0 }

  @Test func releaseCallsReleaseInput() {
    let (rows, cols) = (3, 4)
    let released = Counter(), filled = Counter()
    let t = TensorData(
      deferredF32: [rows, cols],
      fill: { raw in
        filled.calls += 1
        for i in 0..<(rows * cols) {
          raw.storeBytes(of: Float(i), toByteOffset: 4 * i, as: Float.self)
        }
      },
      rows: { range, dst in
        for (k, r) in range.enumerated() {
          for c in 0..<cols { dst[k * cols + c] = Float(r * cols + c) }
        }
      },
      releaseInput: { released.calls += 1 })
    var row = [Float](repeating: 0, count: cols)
    // safe: non-empty
    #expect(row.withUnsafeMutableBufferPointer { t.decodeRows(1..<2, into: $0.baseAddress!) })
    #expect(row == [4, 5, 6, 7])
    t.releasePages()
    #expect(released.calls == 1 && filled.calls == 0, "rows decoded, input released")
    #expect(t.floats() == (0..<(rows * cols)).map(Float.init))
    _ = t.bytes  // decodes whole and keeps it
    #expect(filled.calls == 1 && !t.isDeferred)
    t.releasePages()
    #expect(t.isDeferred && released.calls == 2, "decoded copy dropped, input released")
  }

  @Test func deferredCodesAreMadeOnUse() {
    let filled = Counter()
    let codes: [Int8] = [-8, 7, 0, 3, -1, 5]
    let t = TensorData(deferred: .i8, shape: [2, 3]) { raw in
      filled.calls += 1
      codes.withUnsafeBytes { raw.copyMemory(from: $0) }
    }
    #expect(t.dtype == .i8 && t.shape == [2, 3] && t.byteCount == 6)
    #expect(t.isDeferred && filled.calls == 0, "nothing made at creation")
    #expect(t.int8s() == codes)
    #expect(!t.isDeferred && filled.calls == 1)
    t.releasePages()
    #expect(t.isDeferred)
    #expect(t.bytes == codes.map { UInt8(bitPattern: $0) } && filled.calls == 2)
  }
}
