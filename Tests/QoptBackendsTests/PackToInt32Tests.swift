import CQoptCodecs
import QoptBackends
import QoptFormats
import QoptIR
import QoptPasses
import QoptTestSupport
import Testing

/// Vectors of reference/compressed-tensors.md §7–§8 (computed with compressed-tensors 0.19.0).
private func pack(_ codes: [Int8], bits: Int) -> [UInt32] {
  let t = PackToInt32.packRows(TensorData(int8: codes, shape: [1, codes.count]), bits: bits)
  return t.withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) }
}

@Test func int4WordOfEightCodes() {
  #expect(pack([1, -2, 3, -4, 5, -6, 7, -8], bits: 4) == [0x0F2D_4B69])
  #expect(Int32(bitPattern: 0x0F2D_4B69) == 254_626_665)
}

@Test func int4TwoWordsAndUnpack() {
  let codes: [Int8] = [0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1]
  let words = pack(codes, bits: 4)
  #expect(words.map { Int32(bitPattern: $0) } == [-19_088_744, 1_985_229_328])
  let back = words.withUnsafeBytes { PackToInt32.unpackRows($0, rows: 1, columns: 16, bits: 4) }
  #expect(back == codes)
}

@Test func int8Word() {
  #expect(pack([1, -2, 127, -128], bits: 8) == [0x00FF_7E81])
}

@Test func threeBitPackingIsDense() {
  #expect(PackToInt32.wordsPerRow(columns: 32, bits: 3) == 3)
  let codes = (0..<32).map { Int8($0 % 8 - 4) }
  let back = pack(codes, bits: 3).withUnsafeBytes { PackToInt32.unpackRows($0, rows: 1, columns: 32, bits: 3) }
  #expect(back == codes)
}

/// §7.2: the 128-element row, W4A16 minmax group 128, packs to the listed 16 words.
@Test func fullGroupRow() {
  let w = (0..<128).map { Float(((37 * $0) % 101) - 50) / 64 }
  let q = w.withUnsafeBufferPointer {
    IntQuantizer(scheme: IntScheme(bits: 4, symmetric: true, granularity: .group(128), scaleType: .f32), rule: .minmax)
      .quantize($0, rows: 1, cols: 128)
  }
  let codes = q.codes.int8s()
  #expect(Array(codes[0..<16]) == [-8, -2, 4, -6, 0, 5, -4, 1, 7, -3, 3, -7, -2, 4, -6, 0])
  let words = PackToInt32.packRows(q.codes, bits: 4).withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) }
  let expected: [UInt32] = [
    0x94d8_2c60, 0x82c6_1b5f, 0x71b5_fa4e, 0x6fa4_e83c, 0x5e93_d72b, 0x4d82_c61a, 0x3c71_b5f9, 0x2b6f_a4e8,
    0x1a5e_93d7, 0xf94d_82c6, 0xe83c_71b5, 0xd72b_6fa4, 0xc60a_5e93, 0xb5f9_4d82, 0xa4e8_2c61, 0x83c7_1b5f,
  ]
  #expect(words == expected)
  #expect(Int32(bitPattern: words[0]) == -1_797_772_192)

  // W8A16 of the same row: codes start [−128, −33, 61, −102], first word 0x1ABD5F00.
  let q8 = w.withUnsafeBufferPointer {
    IntQuantizer(scheme: IntScheme(bits: 8, symmetric: true, granularity: .group(128), scaleType: .f32), rule: .minmax)
      .quantize($0, rows: 1, cols: 128)
  }
  #expect(Array(q8.codes.int8s()[0..<4]) == [-128, -33, 61, -102])
  #expect(PackToInt32.packRows(q8.codes, bits: 8).withUnsafeBytes { $0.load(as: UInt32.self) } == 0x1ABD_5F00)

  // Asymmetric variant: zp 0 → packed zero-point word 8 for a single output row.
  let qa = w.withUnsafeBufferPointer {
    IntQuantizer(scheme: IntScheme(bits: 4, symmetric: false, granularity: .group(128), scaleType: .f32), rule: .minmax)
      .quantize($0, rows: 1, cols: 128)
  }
  // safe: asymmetric schemes store zero points.
  let zp = PackToInt32.packColumns(qa.zeroPoint!, bits: 4)
  #expect(zp.shape == [1, 1])
  #expect(zp.withUnsafeBytes { $0.load(as: UInt32.self) } == 8)
}

/// Zero points pack along dim 0: 16 rows × 2 groups → [2, 2] words, row r in nibble r % 8.
@Test func zeroPointsPackAlongRows() {
  var z = [Int8](repeating: 0, count: 32)
  for r in 0..<16 { z[r * 2] = Int8(r % 8 - 4); z[r * 2 + 1] = -8 }
  let t = PackToInt32.packColumns(TensorData(int8: z, shape: [16, 2]), bits: 4)
  #expect(t.shape == [2, 2])
  let w = t.withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) }
  // [word, group]: rows 0…7 of group 0 are codes −4…3, stored +8 → nibbles 4…11.
  #expect(w == [0xBA98_7654, 0, 0xBA98_7654, 0])
}

/// The 4-bit fast path (eight codes a word, rows that are a multiple of 8) gives the words the
/// generic bit loop defines: every such row length up to 200, several rows, any code
/// (out-of-range bytes keep their low nibble), checked by the independent unpacker.
@Test func int4FastPathMatchesTheDefinition() {
  var seed: UInt64 = 3
  for cols in stride(from: 8, through: 200, by: 8) {
    let rows = 3
    let codes = (0..<(rows * cols)).map { _ -> Int8 in
      seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      return Int8(truncatingIfNeeded: seed >> 56)
    }
    let t = PackToInt32.packRows(TensorData(int8: codes, shape: [rows, cols]), bits: 4)
    let back = t.withUnsafeBytes { PackToInt32.unpackRows($0, rows: rows, columns: cols, bits: 4) }
    #expect(back == codes.map { Int8(($0 & 0xF) ^ 8) - 8 }, "\(cols) columns")
  }
}

/// The int4 packing body (AVX2 where the CPU has it) gives the portable body's bytes and the
/// bit stream's definition — code c of a row at bits 4c of the little-endian words, stored
/// +8 — for every int8 value (only the low nibble counts) and for lengths that leave the vector
/// body a tail.
@Test func int4PackBodiesMatchTheBitStream() {
  var r = SplitMix64(seed: 11)
  for n in stride(from: 2, through: 400, by: 2) {
    let codes = (0..<n).map { _ in Int8(truncatingIfNeeded: r.next()) }
    var fast = [UInt8](repeating: 0, count: n / 2), slow = [UInt8](repeating: 0xFF, count: n / 2)
    qopt_pack_int4(codes, n, &fast, 0)
    qopt_pack_int4(codes, n, &slow, 1)
    var defined = [UInt8](repeating: 0, count: n / 2)
    for (c, v) in codes.enumerated() {
      defined[c / 2] |= UInt8((Int(v) + 8) & 0xF) << (4 * (c % 2))
    }
    #expect(fast == defined)
    #expect(slow == defined)
    if n % 8 == 0 {
      // A whole row through packRows: the same bytes as its int32 words.
      let words = PackToInt32.packRows(TensorData(int8: codes, shape: [1, n]), bits: 4)
      #expect(words.withUnsafeBytes { Array($0) } == defined)
    }
  }
}
