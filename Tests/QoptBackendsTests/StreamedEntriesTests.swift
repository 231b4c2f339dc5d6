import CQoptCodecs
import QoptBackends
import QoptFormats
import QoptIR
import QoptSupport
import QoptTestSupport
import Synchronization
import Testing

/// The bytes a streamed entry hands to its sink, assembled by offset (every byte once).
private func collect(_ e: SafetensorsEntry) throws -> [UInt8] {
  let n = e.shape.reduce(1, *) * e.dtype.byteSize
  let out = Mutex<[UInt8]>([UInt8](repeating: 0, count: n))
  let seen = Mutex<Int>(0)
  try #require(e.stream != nil)
  try e.stream! { at, bytes in
    out.withLock { o in for (i, b) in bytes.enumerated() { o[at + i] = b } }
    seen.withLock { $0 += bytes.count }
  }
  #expect(seen.withLock { $0 } == n)
  return out.withLock { $0 }
}

/// Packed as written, in chunks on two threads: the same words as packing the whole tensor,
/// for a tensor of several chunks with a short last one, and for a row width whose words end
/// mid-code (3 bits).
@Test func packedStreamMatchesWholeTensorPacking() throws {
  for (rows, cols, bits) in [(9000, 64, 4), (37, 100, 3), (1, 8, 8)] {
    var g = SplitMix64(seed: UInt64(rows * cols + bits))
    let lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1
    let codes = (0..<(rows * cols)).map { _ in Int8(Int(g.next() % UInt64(hi - lo + 1)) + lo) }
    let t = TensorData(int8: codes, shape: [rows, cols])
    let whole = PackToInt32.packRows(t, bits: bits)
    let streamed = try collect(StreamedEntries.packedInt32("w", codes: t, bits: bits))
    #expect(streamed == whole.withUnsafeBytes { Array($0) }, "\(rows)x\(cols) \(bits) bits")
  }
}

/// Converted as written: the same bytes as `TensorData.converted(to:)`, from an f32 tensor
/// in memory and from one decoded row by row on first use.
@Test func convertedStreamMatchesWholeTensorConversion() throws {
  var g = SplitMix64(seed: 7)
  let (rows, cols) = (3000, 96)
  let values = (0..<(rows * cols)).map { _ in Float(Int64(g.next() % 2_000_001) - 1_000_000) * 1e-4
  }
  let plain = TensorData(floats: values, shape: [rows, cols])
  let source = values
  let deferred = TensorData(deferredF32: [rows, cols]) { out in
    source.withUnsafeBytes { out.copyMemory(from: $0) }
  } rows: { range, dst in
    source.withUnsafeBufferPointer {
      dst.update(from: $0.baseAddress! + range.lowerBound * cols, count: range.count * cols)
    }
  }
  for dtype in [DType.bf16, .f16] {
    let expected = plain.converted(to: dtype).withUnsafeBytes { Array($0) }
    #expect(try collect(StreamedEntries.converted("e", plain, to: dtype)) == expected)
    #expect(try collect(StreamedEntries.converted("e", deferred, to: dtype)) == expected)
  }
}

/// NVFP4 codes two to a byte as written: element 2k in the low nibble of byte k, high bits of
/// each code byte ignored, over several chunks.
@Test func nibbleStreamPacksTwoCodesABytes() throws {
  var g = SplitMix64(seed: 11)
  let (rows, cols) = (20000, 32)
  let codes = (0..<(rows * cols)).map { _ in UInt8(truncatingIfNeeded: g.next()) }
  let t = TensorData(dtype: .u8, shape: [rows, cols], bytes: codes)
  var expected = [UInt8](repeating: 0, count: rows * cols / 2)
  for k in expected.indices {
    let lo: UInt8 = codes[2 * k] & 0xF
    let hi: UInt8 = codes[2 * k + 1] & 0xF
    expected[k] = lo | (hi << 4)
  }
  #expect(try collect(StreamedEntries.packedNibbles("w", codes: t)) == expected)
}

/// 4-bit codes `rtn` holds two to a byte (`TensorData(int4Nibbles:)`) are written as they are:
/// the same words as packing their i8 codes, which read back unchanged (also after
/// `releasePages()` drops the unpacked copy); rows of a width that leaves a short last word
/// take the packing path.
@Test func nibbleCodesStreamAsTheirPackedWords() throws {
  for (rows, cols) in [(300, 576), (7, 24), (5, 12)] {
    var g = SplitMix64(seed: UInt64(rows + cols))
    let codes = (0..<(rows * cols)).map { _ in Int8(Int(g.next() % 16) - 8) }
    var packed = [UInt8](repeating: 0, count: rows * cols / 2)
    qopt_pack_int4(codes, codes.count, &packed, 0)
    let nibbles = TensorData(dtype: .u8, shape: [rows, cols / 2], bytes: packed)
    let held = TensorData(int4Nibbles: nibbles, shape: [rows, cols])
    #expect(held.int4Nibbles != nil)
    #expect(held.dtype == .i8 && held.shape == [rows, cols])
    let expected = PackToInt32.packRows(TensorData(int8: codes, shape: [rows, cols]), bits: 4)
    let streamed = try collect(StreamedEntries.packedInt32("w", codes: held, bits: 4))
    #expect(streamed == expected.withUnsafeBytes { Array($0) })
    #expect(held.int8s() == codes)
    held.releasePages()
    #expect(held.int8s() == codes)
  }
}

/// The unpacking body (AVX2 where the CPU has it) and the portable one invert the packing for
/// every code in [−8, 7] and every even length.
@Test func int4UnpackInvertsPack() {
  var g = SplitMix64(seed: 3)
  for n in stride(from: 2, through: 200, by: 2) {
    let codes = (0..<n).map { _ in Int8(Int(g.next() % 16) - 8) }
    var packed = [UInt8](repeating: 0, count: n / 2)
    qopt_pack_int4(codes, n, &packed, 1)
    var fast = [Int8](repeating: 0, count: n), slow = [Int8](repeating: 1, count: n)
    qopt_unpack_int4(packed, n, &fast, 0)
    qopt_unpack_int4(packed, n, &slow, 1)
    #expect(fast == codes)
    #expect(slow == codes)
  }
}
