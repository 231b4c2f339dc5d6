import CQoptCodecs
import QoptFormats
import QoptIR
import QoptTestSupport
import Testing

/// llama.cpp's own encodings of 40 rows (24 real, 16 adversarial) in every codec of
/// kquants.c, plain and importance-weighted, with ggml's decodings
/// (../shared/data/kquants/codecs.safetensors, made by `ggml_quantize_chunk`; see its README).
private struct CodecReferences {
  static let path = TestPaths.shared + "/data/kquants/codecs.safetensors"
  static var available: Bool { fileExists(path) }

  let bytes: [UInt8]
  let header: JSON
  let dataStart: Int

  init() throws {
    bytes = try readFile(Self.path)
    let n = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.1) << (8 * $1.0) }
    header = try JSON.parse(Array(bytes[8..<(8 + n)]))
    dataStart = 8 + n
  }

  /// The tensor's shape and raw little-endian bytes.
  func tensor(_ name: String) throws -> (shape: [Int], data: ArraySlice<UInt8>) {
    let entry = try #require(header[name], "\(Self.path): no tensor \(name)")
    let shapeValues = entry["shape"]?.arrayValue?.compactMap { $0.intValue }
    let offsetValues = entry["data_offsets"]?.arrayValue?.compactMap { $0.intValue }
    let shape = try #require(shapeValues, "\(Self.path): \(name) has no shape")
    let offsets = try #require(offsetValues, "\(Self.path): \(name) has no data_offsets")
    return (shape, bytes[(dataStart + offsets[0])..<(dataStart + offsets[1])])
  }

  func floats(_ name: String) throws -> (shape: [Int], values: [Float]) {
    let (shape, data) = try tensor(name)
    let values = data.withUnsafeBytes { raw in
      (0..<(raw.count / 4)).map {
        Float(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))
      }
    }
    return (shape, values)
  }
}

/// ggml's type names in the reference file and their ids.
private let codecTypes: [(name: String, id: Int32)] = [
  ("q2_K", Int32(QOPT_GGML_Q2_K)), ("q3_K", Int32(QOPT_GGML_Q3_K)),
  ("q4_K", Int32(QOPT_GGML_Q4_K)), ("q5_K", Int32(QOPT_GGML_Q5_K)),
  ("q6_K", Int32(QOPT_GGML_Q6_K)), ("q4_0", Int32(QOPT_GGML_Q4_0)),
  ("q4_1", Int32(QOPT_GGML_Q4_1)), ("q5_0", Int32(QOPT_GGML_Q5_0)),
  ("q5_1", Int32(QOPT_GGML_Q5_1)), ("q8_0", Int32(QOPT_GGML_Q8_0)),
  ("iq4_nl", Int32(QOPT_GGML_IQ4_NL)), ("iq4_xs", Int32(QOPT_GGML_IQ4_XS)),
]

@Suite(
  .enabled(
    if: CodecReferences.available,
    "needs ../shared/data/kquants/codecs.safetensors beside the checkout"))
struct GGMLCodecReferenceTests {
  /// Every row encodes to llama.cpp's bytes and decodes to ggml's floats, bit for bit.
  @Test(arguments: codecTypes, [false, true])
  func encodesAndDecodesLikeGGML(_ type: (name: String, id: Int32), _ weighted: Bool) throws {
    let refs = try CodecReferences()
    let (shape, input) = try refs.floats("input")
    let (_, importance) = try refs.floats("importance")
    let (rows, cols) = (shape[0], shape[1])
    let key = type.name + (weighted ? ".imatrix" : "")
    let (packedShape, packed) = try refs.tensor(key + ".packed")
    let (_, dequant) = try refs.floats(key + ".dequant")
    let rowSize = qopt_ggml_row_size(type.id, Int64(cols))
    #expect(packedShape == [rows, rowSize])

    var out = [UInt8](repeating: 0xAA, count: rows * rowSize)
    let written = input.withUnsafeBufferPointer { x in
      importance.withUnsafeBufferPointer { w in
        qopt_ggml_quantize(
          type.id, x.baseAddress, &out, Int64(rows), Int64(cols), weighted ? w.baseAddress : nil)
      }
    }
    #expect(written == rows * rowSize)
    let want = Array(packed)
    let badRows = (0..<rows).filter {
      out[($0 * rowSize)..<(($0 + 1) * rowSize)] != want[($0 * rowSize)..<(($0 + 1) * rowSize)]
    }
    #expect(badRows.isEmpty, "\(key): rows \(badRows) differ from llama.cpp's bytes")

    var back = [Float](repeating: .nan, count: rows * cols)
    #expect(qopt_ggml_dequantize(type.id, want, &back, Int64(rows), Int64(cols)) == 0)
    let badDecoded = (0..<rows).filter { r in
      (0..<cols).contains { back[r * cols + $0].bitPattern != dequant[r * cols + $0].bitPattern }
    }
    #expect(badDecoded.isEmpty, "\(key): rows \(badDecoded) decode differently from ggml")
  }

  /// The eight-sub-block searches (Q4_K, Q5_K, Q6_K without importance weights) have an AVX2
  /// copy and a baseline one; the tests above run whichever this CPU picks, this one forces
  /// the baseline copy, so both are held to llama.cpp's bytes.
  @Test(arguments: ["q4_K", "q5_K", "q6_K"])
  func baselineSearchesEncodeLikeGGML(_ name: String) throws {
    let refs = try CodecReferences()
    let id = try #require(codecTypes.first { $0.name == name }?.id)
    let (shape, input) = try refs.floats("input")
    let want = Array(try refs.tensor(name + ".packed").data)
    let (rows, cols) = (shape[0], shape[1])
    var out = [UInt8](repeating: 0xAA, count: want.count)
    qopt_ggml_force_baseline_searches(1)
    defer { qopt_ggml_force_baseline_searches(0) }
    #expect(qopt_ggml_quantize(id, input, &out, Int64(rows), Int64(cols), nil) == want.count)
    #expect(out == want, "\(name): the baseline searches differ from llama.cpp's bytes")
  }

  /// A row that is not a whole number of blocks is refused (0 bytes), never encoded partly:
  /// the K-quants and IQ4_XS need multiples of 256 (llama-quantize then falls back to another
  /// type, see GGUFMixes), the 32-blocks multiples of 32.
  @Test func refusesPartialBlocks() {
    let x = [Float](repeating: 1, count: 576 + 16)
    var out = [UInt8](repeating: 0, count: 4096)
    for (name, id) in codecTypes {
      let superBlock = name.hasSuffix("_K") || name == "iq4_xs"
      #expect((qopt_ggml_row_size(id, 576) == 0) == superBlock, "\(name) at 576")
      #expect(qopt_ggml_quantize(id, x, &out, 1, 576 + 16, nil) == 0, "\(name) at 592")
      var floats = [Float](repeating: 0, count: 592)
      #expect(qopt_ggml_dequantize(id, out, &floats, 1, 592) == -1, "\(name) decoding at 592")
    }
    #expect(qopt_ggml_quantize(99, x, &out, 1, 256, nil) == 0)
  }

  /// Plain 32-blocks are independent: a 576-wide row (SmolLM2's width, where llama-quantize
  /// falls back from the K-quants to these) encodes as the first 18 blocks of the wider row.
  @Test(arguments: ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "iq4_nl"])
  func narrowRowsEncodeBlockwise(_ name: String) throws {
    let refs = try CodecReferences()
    let id = try #require(codecTypes.first { $0.name == name }?.id)
    let (shape, input) = try refs.floats("input")
    let (_, packed) = try refs.tensor(name + ".packed")
    let cols = shape[1], fullRow = qopt_ggml_row_size(id, Int64(cols)),
      narrowRow = qopt_ggml_row_size(id, 576)
    let want = Array(packed)
    for r in 0..<shape[0] {
      var out = [UInt8](repeating: 0, count: narrowRow)
      #expect(
        qopt_ggml_quantize(id, Array(input[(r * cols)..<(r * cols + 576)]), &out, 1, 576, nil)
          == narrowRow)
      #expect(out[...] == want[(r * fullRow)..<(r * fullRow + narrowRow)], "\(name) row \(r)")
    }
  }

  /// The GGUF backend's entry point (`BlockQuantizers.encode`, one row at a time; qopt's own
  /// vectorised Q8_0/Q4_0/Q4_1 encoders when there are no importance weights, llama.cpp's
  /// codecs otherwise) gives llama.cpp's bytes for every writable type, and its decoder
  /// ggml's floats.
  @Test(arguments: codecTypes, [false, true])
  func emitterEncoderMatchesGGML(_ type: (name: String, id: Int32), _ weighted: Bool) throws {
    let refs = try CodecReferences()
    let t = try #require(GGMLType(rawValue: UInt32(type.id)))
    #expect(GGMLType(name: type.name) == t && t.hasGGMLCodec)
    let (shape, input) = try refs.floats("input")
    let (_, importance) = try refs.floats("importance")
    let key = type.name + (weighted ? ".imatrix" : "")
    let want = Array(try refs.tensor(key + ".packed").data)
    let (_, dequant) = try refs.floats(key + ".dequant")
    let (rows, cols) = (shape[0], shape[1])
    let rowSize = t.byteCount(elements: cols)
    for r in 0..<rows {
      var out = [UInt8](repeating: 0xAA, count: rowSize)
      input.withUnsafeBufferPointer { x in
        importance.withUnsafeBufferPointer { w in
          out.withUnsafeMutableBytes {
            BlockQuantizers.encode(
              x.baseAddress! + r * cols, count: cols, as: t, into: $0.baseAddress!,
              importance: weighted ? w.baseAddress : nil)
          }
        }
      }
      #expect(out[...] == want[(r * rowSize)..<((r + 1) * rowSize)], "\(key) row \(r)")
      let back = want[(r * rowSize)..<((r + 1) * rowSize)].withUnsafeBytes {
        BlockQuantizers.decode($0, count: cols, type: t)
      }
      #expect(
        back.map(\.bitPattern) == dequant[(r * cols)..<((r + 1) * cols)].map(\.bitPattern),
        "\(key) row \(r) decodes differently")
    }
  }
}
