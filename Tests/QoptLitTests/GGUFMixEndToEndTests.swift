import CQoptCodecs
import QoptBackends
import QoptFormats
import QoptFrontends
import QoptIR
import QoptTestSupport
import Testing

/// `qopt MODEL.gguf -emit=gguf:MIX` on the shared model (end to end, through the built `qopt`)
/// against llama-quantize's own choices (../shared/data/kquants/mixes.md): every tensor's type
/// and the file size, and the bytes of tensors of each kind re-derived with llama.cpp's codecs
/// (ggml's Q4_1 `to_float` of the source, then `ggml_quantize_chunk`, both verified byte for
/// byte against llama.cpp in `GGMLCodecReferenceTests`) — which is what llama-quantize computes
/// from the F32 model that `--allow-requantize … F32` makes of the same source.
@Suite(
  .serialized,
  .enabled(
    if: fileExists(MixColumns.path) && fileExists(MixColumns.model),
    "needs ../shared/data/kquants/mixes.md and ../shared/models beside the checkout"))
struct GGUFMixEndToEndTests {
  @Test(arguments: ["q4_k_m", "q6_k", "q3_k_m"])
  func sharedModelMatchesLlamaQuantize(_ mix: String) throws {
    let table = try MixColumns()
    let want = try #require(table.types[mix], "mixes.md has no \(mix) column")
    let dir = TinyCheckpoints.scratchDirectory("gguf-mix")
    defer { TinyCheckpoints.removeTree(dir) }
    let out = dir + "/out.gguf"
    let r = try ChildProcess.run([
      TestPaths.binDir + "/qopt", MixColumns.model, "-emit=gguf:\(mix)", "-o", out,
    ])
    try #require(r.termination == .exited(0), "qopt: \(r.stderr)")

    let file = try GGUFFile(path: out)
    let source = try GGUFFile(path: MixColumns.model)
    #expect(Set(file.tensors.map(\.name)) == Set(want.keys))
    var mismatches: [String] = []
    for t in file.tensors where want[t.name] != t.type.ggmlName.uppercased() {
      mismatches.append("\(t.name): \(t.type.ggmlName) vs \(want[t.name] ?? "none")")
    }
    #expect(mismatches.isEmpty, "\(mix): \(mismatches.sorted().joined(separator: ", "))")
    #expect(file.file.size == table.fileBytes[mix], "\(mix): file size")

    try expectGGMLBytes(file, source: source, context: mix)
  }

  /// With llama-imatrix's matrix for the shared model (../shared/data/kquants/
  /// smollm2-calib.imatrix.gguf) as the module's importance statistics, the emitter takes
  /// llama-quantize's `-imat` types and encodes with its weighted codecs (per column
  /// `sum / count`).
  @Test(arguments: ["q4_k_m", "q3_k_m"])
  func sharedModelWithReferenceImatrix(_ mix: String) throws {
    let table = try MixColumns()
    let want = try #require(table.types[mix + "-imat"], "mixes.md has no \(mix)-imat column")
    let imatrix = try GGUFFile(path: MixColumns.imatrix)
    let module = try ModelImporter.load(path: MixColumns.model)
    var weights: [String: [Float]] = [:]
    for hf in module.weights.names {
      let gguf = LlamaTensorNames.gguf(hf)
      guard let sums = imatrix.tensors.first(where: { $0.name == gguf + ".in_sum2" }),
        let counts = imatrix.tensors.first(where: { $0.name == gguf + ".counts" })
      else { continue }
      let s = floats(imatrix, sums)
      let stats = ImportanceStats(
        columns: s.count, sumSquares: s, tokens: floats(imatrix, counts).map { Int($0) })
      module.importance[hf] = stats
      weights[gguf] = stats.columnWeights()
    }
    #expect(weights.count == 210)
    let dir = TinyCheckpoints.scratchDirectory("gguf-mix-imat")
    defer { TinyCheckpoints.removeTree(dir) }
    let out = dir + "/out.gguf"
    let parsed: LlamaMix = try #require(LlamaMix(name: mix))
    let selection = GGUFTypeSelection(mix: parsed)
    try GGUFEmitter(types: selection, threads: 2).emit(module, to: out)
    let file = try GGUFFile(path: out)
    var mismatches: [String] = []
    for t in file.tensors where want[t.name] != t.type.ggmlName.uppercased() {
      mismatches.append("\(t.name): \(t.type.ggmlName) vs \(want[t.name] ?? "none")")
    }
    #expect(mismatches.isEmpty, "\(mix)-imat: \(mismatches.sorted().joined(separator: ", "))")
    // llama-quantize's -imat file holds the plain one's tensor bytes plus four
    // quantize.imatrix.* keys (224 bytes): the sizes say the tensor data has the same length.
    #expect(table.fileBytes[mix + "-imat"]! - table.fileBytes[mix]! == 224)
    try expectGGMLBytes(
      file, source: try GGUFFile(path: MixColumns.model), importance: weights,
      context: mix + "-imat")
  }

  private func floats(_ f: GGUFFile, _ t: GGUFTensorInfo) -> [Float] {
    let b = f.bytes(of: t)
    return (0..<t.elementCount).map {
      Float(bitPattern: b.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))
    }
  }

  /// One tensor of each quantized type in `file` equals llama.cpp's encoding of the source
  /// tensor's ggml decoding, byte for byte (with the tensor's importance row when given).
  private func expectGGMLBytes(
    _ file: GGUFFile, source: GGUFFile, importance: [String: [Float]] = [:], context: String
  ) throws {
    var checked = Set<GGMLType>()
    for t in file.tensors where t.type.isQuantized && checked.insert(t.type).inserted {
      let src = try #require(source.tensors.first { $0.name == t.name })
      #expect(src.type.hasGGMLCodec && src.dims == t.dims)
      let (cols, rows) = (t.dims[0], t.elementCount / t.dims[0])
      var f32 = [Float](repeating: 0, count: t.elementCount)
      let decoded = f32.withUnsafeMutableBufferPointer { y in
        qopt_ggml_dequantize(
          Int32(src.type.rawValue), source.bytes(of: src).baseAddress, y.baseAddress, Int64(rows),
          Int64(cols))
      }
      try #require(decoded == 0)
      var expected = [UInt8](repeating: 0, count: t.byteCount)
      let w = importance[t.name]
      let n = f32.withUnsafeBufferPointer { x in
        qopt_ggml_quantize(
          Int32(t.type.rawValue), x.baseAddress, &expected, Int64(rows), Int64(cols), w)
      }
      #expect(n == t.byteCount)
      #expect(
        Array(file.bytes(of: t)) == expected,
        "\(context): \(t.name) (\(t.type.ggmlName)\(w == nil ? "" : ", weighted")) differs")
    }
    #expect(checked.count >= 2)
  }
}

/// llama-quantize's type for every tensor of the shared model per mix, and the file sizes
/// (../shared/data/kquants/mixes.md).
struct MixColumns {
  static let path = TestPaths.shared + "/data/kquants/mixes.md"
  static let model = TestPaths.shared + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
  static let imatrix = TestPaths.shared + "/data/kquants/smollm2-calib.imatrix.gguf"

  var types: [String: [String: String]] = [:]  // column → tensor → type
  var fileBytes: [String: Int] = [:]

  init() throws {
    var columns: [String] = []
    for line in readTextFile(Self.path).split(separator: "\n") where line.hasPrefix("| ") {
      let cells = line.split(separator: "|").map {
        String($0.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
      }
      if cells[0] == "tensor" {
        columns = Array(cells.dropFirst())
        continue
      }
      for (c, v) in zip(columns, cells.dropFirst()) {
        if cells[0] == "**file bytes**" {
          fileBytes[c] = Int(v)
        } else {
          types[c, default: [:]][cells[0]] = v
        }
      }
    }
  }
}
