import QoptIR
import QoptTestSupport
import Testing

/// `TensorData(f32Decoding:)`, the form an f16/bf16 checkpoint tensor takes on import: every
/// way of reading it gives the values an eager conversion gives, and releasing it forgets
/// nothing.
@Suite struct LazyConversionTests {
  /// A 37×24 tensor of `dtype` with values across the range, stored in a mapped safetensors file
  /// (as the importer sees it), and its eager f32 conversion.
  static func sample(_ dtype: DType, in dir: String) throws -> (TensorData, [Float]) {
    var rng = SplitMix64(seed: 7)
    let values = (0..<(37 * 24)).map { i in Float(rng.normal()) * Float(1 << (i % 9)) / 16 }
    let path = dir + "/t.safetensors"
    try SafetensorsWriter.write(
      [SafetensorsEntry(name: "w", data: TensorData(floats: values, shape: [37, 24], as: dtype))],
      to: path)
    let mapped = try #require(try SafetensorsFile(path: path).tensor(named: "w"))
    #expect(mapped.isMemoryMapped)
    return (mapped, mapped.floats())
  }

  @Test(arguments: [DType.bf16, .f16])
  func everyReadMatchesTheEagerConversion(_ dtype: DType) throws {
    try TestTemporary.withDirectory("lazy-\(dtype)") { dir in
      let (source, eager) = try Self.sample(dtype, in: dir)
      let lazy = TensorData(f32Decoding: source)
      #expect(lazy.dtype == .f32 && lazy.shape == [37, 24] && lazy.byteCount == 37 * 24 * 4)
      #expect(lazy.isDeferred && lazy.decodesRows)
      #expect(lazy.conversionSource?.isIdentical(to: source) == true)
      // Row chunks, as rtn and the writers read it, before anything is decoded whole.
      var rows = [Float](repeating: .nan, count: eager.count)
      rows.withUnsafeMutableBufferPointer { b in
        #expect(lazy.decodeRows(0..<5, into: b.baseAddress!))
        #expect(lazy.decodeRows(5..<37, into: b.baseAddress! + 5 * 24))
      }
      #expect(rows == eager)
      // The whole tensor, as the block executor reads it: converted into the result, no copy
      // kept.
      #expect(lazy.floats() == eager)
      #expect(lazy.isDeferred)
      // In place, as the interpreter reads it: converted once and kept until released.
      lazy.withF32 { #expect(Array($0) == eager) }
      #expect(!lazy.isDeferred)
      lazy.releasePages()
      #expect(lazy.isDeferred)
      #expect(lazy.floats() == eager)
      // Back to its own dtype: the source's bytes.
      #expect(TensorData(floats: eager, shape: [37, 24], as: dtype).isIdentical(to: source))
    }
  }

  /// A mapped tensor's pages released by byte range stay readable (read again from the file).
  @Test func releasingMappedRangesKeepsTheBytes() throws {
    try TestTemporary.withDirectory("lazy-range") { dir in
      let (source, eager) = try Self.sample(.bf16, in: dir)
      let before = source.bytes
      source.releasePages(0..<(source.byteCount / 2))
      source.releasePages(0..<source.byteCount)
      #expect(source.bytes == before)
      #expect(source.floats() == eager)
    }
  }
}
