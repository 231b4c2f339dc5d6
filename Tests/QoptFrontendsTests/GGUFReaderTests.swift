import QoptFormats
import QoptFrontends
import QoptIR
import QoptTestSupport
import Testing

/// Runs `body` on `bytes` written as file `name` in a scratch directory removed afterwards.
private func withFile<T>(_ bytes: [UInt8], _ name: String, _ body: (String) throws -> T) throws -> T {
  let dir = TinyCheckpoints.scratchDirectory("gguf")
  defer { TinyCheckpoints.removeTree(dir) }
  let path = dir + "/" + name
  try TinyCheckpoints.writeBytes(bytes, to: path)
  return try body(path)
}

private func hex(_ s: String) -> [UInt8] {
  var out: [UInt8] = []
  var it = s.filter { !$0.isWhitespace }.makeIterator()
  while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
  return out
}

/// Expects opening `bytes` as GGUF to fail with a message naming the file, a byte offset and `needle`.
private func expectGGUFError(_ bytes: [UInt8], offset: Int? = nil, _ needle: String) throws {
  try withFile(bytes, "bad.gguf") { path in
    do {
      _ = try GGUFFile(path: path)
      Issue.record("expected an error containing '\(needle)'")
    } catch {
      let text = "\(error)"
      #expect(text.hasPrefix(path + ":@"), "\(text)")
      if let offset { #expect(text.hasPrefix("\(path):@\(offset):"), "\(text)") }
      #expect(text.contains(needle), "\(text)")
    }
  }
}

@Suite struct GGUFReaderTests {
  /// gguf.md §6.1: the smallest file the reference writer produces, 192 bytes.
  @Test func smallestFile() throws {
    var g = GGUFBuilder()
    g.metadata = [("general.architecture", .string("llama")), ("llama.block_count", .u32(1))]
    g.addF32("t", shape: [2, 3], [0, 1, 2, 3, 4, 5])
    let (bytes, dataStart) = g.build()
    #expect(dataStart == 160)
    #expect(bytes.count == 192)
    #expect(Array(bytes.prefix(24)) == hex("47475546 03000000 0100000000000000 0200000000000000"))
    let f = try withFile(bytes, "min.gguf") { try GGUFFile(path: $0) }
    #expect(f.version == 3)
    #expect(f.dataStart == 160)
    #expect(f["llama.block_count"] == .u32(1))
    #expect(f.tensors.count == 1)
    #expect(f.tensors[0].dims == [3, 2])
    #expect(f.tensors[0].shape == [2, 3])
    let raw = f.bytes(of: f.tensors[0])
    #expect((0..<6).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) } == [0, 1, 2, 3, 4, 5])
  }

  @Test func badMagic() throws {
    var bytes = GGUFBuilder().build().bytes
    bytes[0] = 0x46
    try expectGGUFError(bytes, offset: 0, "bad magic")
  }

  @Test func unsupportedVersion() throws {
    var g = GGUFBuilder()
    g.version = 7
    try expectGGUFError(g.build().bytes, offset: 4, "unsupported GGUF version 7")
  }

  @Test func truncatedMetadata() throws {
    var g = GGUFBuilder()
    g.metadata = [("general.architecture", .string("llama")), ("llama.block_count", .u32(1))]
    let bytes = g.build().bytes
    try expectGGUFError(Array(bytes.prefix(60)), "truncated")
  }

  @Test func hugeCountsAreRejectedBeforeAllocating() throws {
    var b = Array("GGUF".utf8) + [3, 0, 0, 0]
    b += [0, 0, 0, 0, 0, 0, 0, 0]  // tensors
    b += [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]  // kv count
    try expectGGUFError(b, offset: 16, "cannot fit")
    var g = GGUFBuilder()
    g.metadata = [("k", .raw(8, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]))]
    try expectGGUFError(g.build().bytes, "string length")
  }

  @Test func truncatedTensorData() throws {
    var g = GGUFBuilder()
    g.addF32("t", shape: [4, 8], [Float](repeating: 1, count: 32))
    let (bytes, dataStart) = g.build()
    try expectGGUFError(Array(bytes.prefix(dataStart + 20)), offset: dataStart, "truncated tensor data")
  }

  @Test func unknownTensorType() throws {
    var g = GGUFBuilder()
    g.tensors = [.init(name: "t", dims: [32], type: 99, data: [UInt8](repeating: 0, count: 32))]
    try expectGGUFError(g.build().bytes, "unknown ggml tensor type 99")
  }

  @Test func misalignedTensorOffset() throws {
    var g = GGUFBuilder()
    g.tensors = [.init(name: "t", dims: [4], type: 0, data: [UInt8](repeating: 0, count: 16), offset: 4)]
    try expectGGUFError(g.build().bytes, "not a multiple of the alignment 32")
  }

  @Test func unknownMetadataType() throws {
    var g = GGUFBuilder()
    g.metadata = [("k", .raw(42, []))]
    try expectGGUFError(g.build().bytes, "unknown metadata value type 42")
  }
}

@Suite struct GGUFDequantTests {
  private func decode(_ type: GGMLType, _ bytes: [UInt8], _ n: Int) -> [Float] {
    var out = [Float](repeating: 0, count: n)
    bytes.withUnsafeBytes { src in out.withUnsafeMutableBufferPointer { _ = GGUFDequant.decode(type, src, count: n, into: $0.baseAddress!) } }
    return out
  }

  /// gguf.md §6.2–6.5 test vectors.
  @Test func q4_0() {
    let y = decode(.q4_0, hex("0034809191a252b9b3c4c4d5d5e6e6f7f7f8"), 32)
    #expect(Array(y.prefix(6)) == [-2.0, -1.75, -1.75, -1.5, -1.5, 0.25])
    #expect(Array(y.suffix(3)) == [1.75, 1.75, 1.75])
    let neg = decode(.q4_0, hex("00b65b5a4a4a493939382828271717160606"), 32)
    #expect(Array(neg.prefix(5)) == [-1.125, -0.75, -0.75, -0.75, -0.375])
    #expect(Array(neg.suffix(2)) == [3.0, 3.0])
  }

  @Test func q4_1() {
    let y = decode(.q4_1, hex("223400c08080919152a9b3b3c4c4d5d5e6e6f7f7"), 32)
    #expect(y[5] == 0.32470703125)
    #expect(y[0] == -2.0)
  }

  @Test func q8_0() {
    let y = decode(.q8_0, hex("082481899199a113b1b9c0c8d0d8e0e8f0f800081018d428303840474f575f676f77"), 32)
    #expect(y[0] == -1.9998779296875)
  }

  /// The AVX2 decoders give the scalar definition's bits (`d·q`, `d·q + m`, multiply then add,
  /// `m = −8·d` for Q4_0) on random blocks: every f16 scale pattern, the nibble order of
  /// gguf.md §6 (low nibbles are elements 0–15, high nibbles 16–31).
  @Test func vectorDecodersMatchTheScalarDefinition() {
    var rng = SplitMix64(seed: 5)
    var mismatches = 0
    for (type, blockBytes) in [(GGMLType.q4_0, 18), (.q4_1, 20), (.q8_0, 34)] {
      let blocks = 1_000
      let bytes = (0..<(blockBytes * blocks)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
      let y = decode(type, bytes, blocks * 32)
      for b in 0..<blocks {
        let p = b * blockBytes
        let half = { (o: Int) in f16ToFloat(UInt16(bytes[p + o]) | UInt16(bytes[p + o + 1]) << 8) }
        let d = half(0)
        for j in 0..<32 {
          let expected: Float
          switch type {
          case .q8_0:
            expected = d * Float(Int8(bitPattern: bytes[p + 2 + j]))
          case .q4_0:
            let q = j < 16 ? bytes[p + 2 + j] & 0xF : bytes[p + 2 + j - 16] >> 4
            expected = d * Float(q) + -8 * d
          default:
            let q = j < 16 ? bytes[p + 4 + j] & 0xF : bytes[p + 4 + j - 16] >> 4
            expected = d * Float(q) + half(2)
          }
          let got = y[b * 32 + j]
          if got.bitPattern != expected.bitPattern && !(got.isNaN && expected.isNaN) {
            mismatches += 1
          }
        }
      }
    }
    #expect(mismatches == 0)
  }

  @Test func q4_K() {
    var block = hex("003c0038010203c4000102c3455667ff")
    for c in 0..<4 {
      for i in 0..<32 {
        let lo = UInt8((i + 2 * c) % 16), hi = UInt8((i + 2 * c + 1) % 16)
        block.append(lo | hi << 4)
      }
    }
    #expect(Array(block[48..<52]) == hex("32435465"))
    let y = decode(.q4_K, block, 256)
    #expect(Array(y[0..<4]) == [0, 1, 2, 3])
    #expect(Array(y[32..<36]) == [1.5, 3.5, 5.5, 7.5])
    #expect(Array(y[224..<228]) == [409.5, 472.5, 535.5, 598.5])
    #expect(y[255] == 346.5)
  }

  @Test func q6_K() {
    // v(k) = 7k mod 64 packed as ql/qh; scales (−1)^s·(s+1); d = 0.25.
    var ql = [UInt8](repeating: 0, count: 128), qh = [UInt8](repeating: 0, count: 64)
    for k in 0..<256 {
      let v = (7 * k) % 64
      let h = k / 128, r = k % 128, l = r % 32, quarter = r / 32
      let qlIndex = 64 * h + l + (quarter % 2 == 1 ? 32 : 0)
      ql[qlIndex] |= UInt8(v & 0xF) << (quarter >= 2 ? 4 : 0)
      qh[32 * h + l] |= UInt8(v >> 4) << (2 * quarter)
    }
    var scales: [UInt8] = []
    for s in 0..<16 {
      let v: Int = s % 2 == 0 ? s + 1 : -(s + 1)
      scales.append(UInt8(bitPattern: Int8(v)))
    }
    let block = ql + qh + scales + hex("0034")
    #expect(Array(block[0..<4]) == hex("0077ee55"))
    #expect(Array(block[128..<132]) == hex("888888dd"))
    let y = decode(.q6_K, block, 256)
    #expect(Array(y[0..<4]) == [-8.0, -6.25, -4.5, -2.75])
    #expect(y[16] == -8.0)
    #expect(y[64] == -40.0)
    #expect(y[200] == 78.0)
    #expect(y[255] == -100.0)
  }

  @Test func halfFormats() {
    #expect(decode(.bf16, [0x9A, 0x3E], 1)[0] == bf16ToFloat(0x3E9A))
    #expect(decode(.f16, [0xCD, 0x34], 1)[0] == f16ToFloat(0x34CD))
  }
}
