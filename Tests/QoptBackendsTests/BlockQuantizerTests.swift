import QoptBackends
import QoptFormats
import QoptIR
import Testing

/// Vectors of reference/gguf.md §6 (computed with gguf 0.19.0).
private func encode(_ x: [Float], _ t: GGMLType) -> [UInt8] {
  var out = [UInt8](repeating: 0, count: t.typeSize * x.count / t.blockSize)
  x.withUnsafeBufferPointer { xs in
    out.withUnsafeMutableBytes { BlockQuantizers.encode(xs.baseAddress!, count: x.count, as: t, into: $0.baseAddress!) }
  }
  return out
}

private let block: [Float] = {
  var x = (0..<32).map { Float($0 - 16) / 8 }
  x[5] = 0.3
  x[20] = -0.7
  return x
}()

@Test func q4_0Vector() {
  let b = encode(block, .q4_0)
  #expect(hex(b) == "0034809191a252b9b3c4c4d5d5e6e6f7f7f8")
  let y = b.withUnsafeBytes { BlockQuantizers.decode($0, count: 32, type: .q4_0) }
  #expect(Array(y[0..<6]) == [-2.0, -1.75, -1.75, -1.5, -1.5, 0.25])
}

@Test func q4_1Vector() {
  let b = encode(block, .q4_1)
  #expect(hex(b) == "223400c08080919152a9b3b3c4c4d5d5e6e6f7f7")
  let y = b.withUnsafeBytes { BlockQuantizers.decode($0, count: 32, type: .q4_1) }
  #expect(y[5] == 0.32470703125)
}

@Test func q8_0Vector() {
  let b = encode(block, .q8_0)
  #expect(hex(b) == "082481899199a113b1b9c0c8d0d8e0e8f0f800081018d428303840474f575f676f77")
  let y = b.withUnsafeBytes { BlockQuantizers.decode($0, count: 32, type: .q8_0) }
  #expect(y[0] == -1.9998779296875)
}

@Test func floatVectors() {
  #expect(hex(encode([0.3], .bf16)) == "9a3e")
  #expect(hex(encode([0.3], .f16)) == "cd34")
}

@Test func q4_0NegativeScale() {
  // numpy linspace(-1, 3, 32) in f32.
  let x = (0..<32).map { Float(-1.0 + 4.0 * Double($0) / 31.0) }
  let b = encode(x, .q4_0)
  #expect(hex(b) == "00b65b5a4a4a493939382828271717160606")
  let y = b.withUnsafeBytes { BlockQuantizers.decode($0, count: 32, type: .q4_0) }
  #expect(Array(y[0..<4]) == [-1.125, -0.75, -0.75, -0.75])
  #expect(y[31] == 3.0)
}

/// §6.1: the smallest GGUFWriter file, 192 bytes.
@Test func smallestFile() throws {
  let dir = makeTemporaryDirectory("smallest")
  defer { removePath(dir) }
  let path = dir + "/t.gguf"
  let t: [Float] = [0, 1, 2, 3, 4, 5]
  try GGUFFileWriter.write(
    metadata: [("general.architecture", .string("llama")), ("llama.block_count", .u32(1))],
    tensors: [GGUFTensorEntry(name: "t", shape: [2, 3], type: .f32) { t.withUnsafeBytes { Array($0) } }],
    to: path)
  let bytes = try readFile(path)
  #expect(bytes.count == 192)
  #expect(hex(Array(bytes[0..<24])) == "47475546030000000100000000000000" + "0200000000000000")
  #expect(hex(Array(bytes[160..<184])) == "000000000000803f000000400000404000008040" + "0000a040")
}

/// The integer f32 → f16 conversion agrees with IEEE `Float16(x)` (round to nearest even) on
/// normals, subnormals, ties, overflow and zeros.
@Test func halfConversionMatchesIEEE() {
  var s: UInt32 = 12345
  var checked = 0
  let special: [UInt32] = [0, 0x8000_0000, 0x3880_0000, 0x387F_FFFF, 0x477F_E000, 0x477F_EFFF, 0x477F_F000, 0x4780_0000, 0x7F80_0000, 0x3300_0000, 0x3300_0001, 0x32FF_FFFF]
  for bits in special + (0..<2_000_000).map({ _ in s = s &* 1_664_525 &+ 1_013_904_223; return s }) {
    let x = Float(bitPattern: bits)
    guard !x.isNaN else { continue }
    #expect(BlockQuantizers.halfBits(x) == Float16(x).bitPattern, "\(x) bits \(String(bits, radix: 16))")
    checked += 1
  }
  #expect(checked > 1_000_000)
}
