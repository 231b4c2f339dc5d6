import QoptIR
import QoptTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// `WeightSpill`: quantized weights set into a store with a spill folder come back mapped from
/// disk with the same bytes, leave no file behind, and small tensors stay in memory.
@Suite struct WeightSpillTests {
  @Test func quantizedWeightsComeBackMappedWithTheSameBytes() throws {
    try TestTemporary.withDirectory("spill") { dir in
      let spillDir = dir + "/spill"
      let store = WeightStore()
      store.spill = WeightSpill(directory: spillDir, minimumBytes: 1024)
      var rng = SplitMix64(seed: 3)
      let codes = (0..<(64 * 128)).map { _ in Int8(truncatingIfNeeded: rng.next()) }
      let scales = (0..<64).map { Float($0) / 7 }
      let q = QuantizedTensor(
        scheme: .int(IntScheme(bits: 8, symmetric: true, granularity: .channel, scaleType: .f32)),
        codes: TensorData(int8: codes, shape: [64, 128]),
        scale: TensorData(floats: scales, shape: [64, 1]))
      store.set(
        "w", .dense(TensorData(floats: [Float](repeating: 1, count: 64 * 128), shape: [64, 128])))
      store.set("w", .quantized(q))
      let back = try #require(store.quantized("w"))
      #expect(back.codes.isMemoryMapped)
      #expect(back.codes.int8s() == codes)
      // 256 bytes of scales: under the minimum, kept in memory.
      #expect(!back.scale.isMemoryMapped)
      #expect(back.scale.floats() == scales)
      #expect(store.spill?.bytesSpilled == codes.count)
      #expect(store.spill?.firstError == nil)
      #expect(directoryEntries(spillDir).isEmpty, "spill files are unlinked once mapped")
      back.codes.releasePages()
      #expect(back.codes.int8s() == codes)
    }
  }
}
