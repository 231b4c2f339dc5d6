import CQoptCodecs
import Foundation
import QoptBackends
import QoptFormats
import QoptIR
import QoptTestSupport
import Testing

/// The tensor infos and the few metadata values of a GGUF file's header (a test-local reader,
/// independent of the frontends).
private struct GGUFHeader {
  var tensors: [LlamaTensorInfo] = []
  var strings: [String: String] = [:]
  var integers: [String: Int] = [:]
  var elements: [String: Int] = [:]

  init(path: String) throws {
    let handle = try #require(FileHandle(forReadingAtPath: path), "cannot open \(path)")
    defer { try? handle.close() }
    let bytes = [UInt8](handle.readData(ofLength: 64 << 20))
    var at = 0
    func u(_ n: Int) throws -> UInt64 {
      try #require(at + n <= bytes.count, "\(path): header past the first 64 MiB")
      defer { at += n }
      return (0..<n).reduce(0) { $0 | UInt64(bytes[at + $1]) << (8 * $1) }
    }
    func string() throws -> String {
      let n = Int(try u(8))
      try #require(at + n <= bytes.count)
      defer { at += n }
      return String(decoding: bytes[at..<(at + n)], as: UTF8.self)
    }
    let scalarSizes: [UInt64: Int] = [
      0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8,
    ]
    func skip(_ type: UInt64) throws {
      if let n = scalarSizes[type] {
        _ = try u(n)
      } else if type == 8 {
        _ = try string()
      } else if type == 9 {
        let (inner, count) = (try u(4), try u(8))
        for _ in 0..<count { try skip(inner) }
      } else {
        Issue.record("\(path): unknown GGUF value type \(type)")
      }
    }
    #expect(try u(4) == 0x4655_4747)  // "GGUF"
    _ = try u(4)
    let (tensorCount, kvCount) = (try u(8), try u(8))
    for _ in 0..<kvCount {
      let key = try string()
      let type = try u(4)
      switch type {
      case 4, 5: integers[key] = Int(try u(4))
      case 8: strings[key] = try string()
      default: try skip(type)
      }
    }
    for _ in 0..<tensorCount {
      let name = try string()
      let dims = Int(try u(4))
      let ne = try (0..<dims).map { _ in Int(try u(8)) }
      _ = (try u(4), try u(8))
      tensors.append(LlamaTensorInfo(name: name, rowLength: ne[0], dimensionCount: dims))
      elements[name] = ne.reduce(1, *)
    }
  }
}

/// llama-quantize's choices for the shared model (../shared/data/kquants/mixes.md): for each
/// column (a mix, `-imat` with the importance matrix) the type of every tensor, and the file sizes.
private struct MixTable {
  static let path = TestPaths.shared + "/data/kquants/mixes.md"
  static let model = TestPaths.shared + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
  static var available: Bool { fileExists(path) && fileExists(model) }

  var columns: [String] = []
  var types: [String: [String: String]] = [:]  // column → tensor → type
  var fileBytes: [String: Int] = [:]

  init() throws {
    let lines = String(decoding: try readFile(Self.path), as: UTF8.self).split(separator: "\n")
    for line in lines where line.hasPrefix("| ") {
      let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
      if cells[0] == "tensor" { columns = Array(cells.dropFirst()); continue }
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

@Suite(
  .enabled(
    if: MixTable.available,
    "needs ../shared/data/kquants/mixes.md and ../shared/models beside the checkout"))
struct GGUFMixesReferenceTests {
  /// Every tensor of the shared model gets llama-quantize's type in every mix, with and
  /// without an importance matrix, and the tensor bytes account for the file-size differences.
  @Test func sharedModelMatchesLlamaQuantize() throws {
    let table = try MixTable()
    let header = try GGUFHeader(path: MixTable.model)
    let facts = LlamaModelFacts(
      architecture: try #require(header.strings["general.architecture"]),
      layerCount: try #require(header.integers["llama.block_count"]),
      headCount: try #require(header.integers["llama.attention.head_count"]),
      kvHeadCount: try #require(header.integers["llama.attention.head_count_kv"]),
      expertCount: header.integers["llama.expert_count"] ?? 0)
    #expect(table.columns.count == 14)
    var dataBytes: [String: Int] = [:]
    for column in table.columns {
      let imat = column.hasSuffix("-imat")
      let mix = try #require(LlamaMix(name: String(column.dropLast(imat ? 5 : 0))), "\(column)")
      let want = try #require(table.types[column])
      let got = try GGUFMixes.types(
        for: header.tensors, model: facts, options: LlamaMixOptions(mix: mix, hasImatrix: imat))
      #expect(Set(got.keys) == Set(want.keys), "\(column): tensor names")
      var mismatches: [String] = []
      for (name, w) in want where got[name]?.name.uppercased() != w {
        mismatches.append("\(name): \(got[name].map { $0.name } ?? "none") vs \(w)")
      }
      #expect(mismatches.isEmpty, "\(column): \(mismatches.sorted().joined(separator: ", "))")
      // Tensor data as llama.cpp lays it out: each tensor padded to 32 bytes.
      dataBytes[column] = header.tensors.reduce(0) { sum, t in
        let type = got[t.name] ?? GGMLType.f32
        let rows = header.elements[t.name]! / t.rowLength
        let bytes = rows * (t.rowLength / type.blockSize) * type.typeSize
        return sum + (bytes + 31) / 32 * 32
      }
    }
    // Every plain file has the same header (the file type is a u32 either way), every -imat
    // one too, so size differences are tensor-data differences.
    for imat in ["", "-imat"] {
      let cols = table.columns.filter { $0.hasSuffix("-imat") == !imat.isEmpty }
      for c in cols.dropFirst() {
        let (a, b) = (cols[0], c)
        #expect(
          table.fileBytes[b]! - table.fileBytes[a]! == dataBytes[b]! - dataBytes[a]!, "\(a) → \(b)")
      }
    }
  }
}

/// The rules on synthetic models: what does not depend on the shared model.
struct GGUFMixesRuleTests {
  private let llama = LlamaModelFacts(
    architecture: "llama", layerCount: 16, headCount: 32, kvHeadCount: 8)

  private func model(width: Int, layers: Int = 16, output: Bool = true) -> [LlamaTensorInfo] {
    var t = [
      LlamaTensorInfo(name: "token_embd.weight", rowLength: width, dimensionCount: 2),
      LlamaTensorInfo(name: "output_norm.weight", rowLength: width, dimensionCount: 1),
    ]
    if output {
      t.append(LlamaTensorInfo(name: "output.weight", rowLength: width, dimensionCount: 2))
    }
    for i in 0..<layers {
      for n in ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up"] {
        t.append(LlamaTensorInfo(name: "blk.\(i).\(n).weight", rowLength: width, dimensionCount: 2))
      }
      t.append(
        LlamaTensorInfo(name: "blk.\(i).ffn_down.weight", rowLength: 4 * width, dimensionCount: 2))
      t.append(
        LlamaTensorInfo(name: "blk.\(i).attn_norm.weight", rowLength: width, dimensionCount: 1))
    }
    return t
  }

  /// The Swift block table agrees with the C codecs' row sizes.
  @Test func blockTableMatchesCodecs() {
    for t in GGMLType.allCases where t.hasGGMLCodec {
      #expect(qopt_ggml_row_size(Int32(t.rawValue), Int64(t.blockSize)) == t.typeSize, "\(t.name)")
    }
  }

  /// Q4_K_M on a 4096-wide model: Q6_K output, Q6_K for the use_more_bits attention-v and
  /// ffn_down layers (first and last eighth, every third between), Q4_K elsewhere, F32 norms.
  @Test func q4KMOnAWideModel() throws {
    let got = try GGUFMixes.types(
      for: model(width: 4096), model: llama, options: LlamaMixOptions(mix: .q4_k_m))
    #expect(
      got["output.weight"] == .q6_K && got["token_embd.weight"] == .q4_K
        && got["output_norm.weight"] == .f32)
    let more = [0, 1, 4, 7, 10, 13, 14, 15]  // i < 2 || i >= 14 || (i - 2) % 3 == 2
    for i in 0..<16 {
      let want: GGMLType = more.contains(i) ? .q6_K : .q4_K
      #expect(
        got["blk.\(i).attn_v.weight"] == want && got["blk.\(i).ffn_down.weight"] == want,
        "layer \(i)")
      #expect(got["blk.\(i).attn_q.weight"] == .q4_K && got["blk.\(i).ffn_up.weight"] == .q4_K)
    }
  }

  /// Counters follow llama.cpp's order (layer number, then name), not the order given.
  @Test func orderIsByLayerNumber() throws {
    let tensors = model(width: 4096)
    let a = try GGUFMixes.types(for: tensors, model: llama, options: LlamaMixOptions(mix: .q3_k_m))
    let b = try GGUFMixes.types(
      for: tensors.reversed(), model: llama, options: LlamaMixOptions(mix: .q3_k_m))
    #expect(a == b)
    #expect(
      a["blk.0.attn_v.weight"] == .q5_K && a["blk.1.attn_v.weight"] == .q5_K
        && a["blk.10.attn_v.weight"] == .q4_K)
  }

  /// Rows that are no multiple of 256 fall back: Q4_K → Q5_0, Q6_K → Q8_0, Q2_K/Q3_K → Q4_0,
  /// Q5_K → Q5_1, IQ4_XS → IQ4_NL, and to F16 when 32 does not divide the row.
  @Test func rowLengthFallbacks() throws {
    #expect(GGUFMixes.fallback(.q4_K, rowLength: 576) == .q5_0)
    #expect(GGUFMixes.fallback(.q6_K, rowLength: 576) == .q8_0)
    #expect(
      GGUFMixes.fallback(.q2_K, rowLength: 576) == .q4_0
        && GGUFMixes.fallback(.q3_K, rowLength: 576) == .q4_0)
    #expect(GGUFMixes.fallback(.q5_K, rowLength: 576) == .q5_1)
    #expect(GGUFMixes.fallback(.iq4_xs, rowLength: 576) == .iq4_nl)
    #expect(
      GGUFMixes.fallback(.q4_K, rowLength: 100) == .f16
        && GGUFMixes.fallback(.q8_0, rowLength: 100) == .f16)
    #expect(GGUFMixes.fallback(.q4_K, rowLength: 512) == .q4_K)
    let got = try GGUFMixes.types(
      for: model(width: 576, output: false), model: llama, options: LlamaMixOptions(mix: .q5_k_s))
    // Tied embeddings are treated as the output: Q8_0 since 576 is no multiple of 256.
    #expect(got["token_embd.weight"] == .q8_0 && got["blk.3.attn_q.weight"] == .q5_1)
    #expect(got["blk.3.ffn_down.weight"] == .q5_K)  // 2304 = 9 × 256
  }

  /// --pure, --tensor-type, --leave-output-tensor and --output-tensor-type.
  @Test func options() throws {
    let t = model(width: 4096)
    let pure = try GGUFMixes.types(
      for: t, model: llama, options: LlamaMixOptions(mix: .q4_k_m, pure: true))
    #expect(pure.filter { $0.value != .f32 }.allSatisfy { $0.value == .q4_K })
    let o = try GGUFMixes.types(
      for: t, model: llama,
      options: LlamaMixOptions(
        mix: .q4_k_m, overrides: [(try NamePattern("attn_v"), .q8_0)], outputTensorType: .q5_K,
        quantizeOutputTensor: true))
    #expect(
      o["blk.0.attn_v.weight"] == .q8_0 && o["blk.5.attn_v.weight"] == .q8_0
        && o["output.weight"] == .q5_K)
    let leave = try GGUFMixes.types(
      for: t, model: llama, options: LlamaMixOptions(mix: .q4_k_m, quantizeOutputTensor: false))
    #expect(leave["output.weight"] == .f32)
  }

  /// The rules that read the importance matrix: Q4_0/Q5_0 guard the first eighth of ffn_down
  /// with Q4_1/Q5_1 only when one is given; IQ4_XS bumps it to Q5_K only when none is.
  @Test func imatrixDependentRules() throws {
    let t = model(width: 4096)
    for (mix, guarded) in [(LlamaMix.q4_0, GGMLType.q4_1), (.q5_0, .q5_1)] {
      let plain = try GGUFMixes.types(for: t, model: llama, options: LlamaMixOptions(mix: mix))
      let imat = try GGUFMixes.types(
        for: t, model: llama, options: LlamaMixOptions(mix: mix, hasImatrix: true))
      #expect(
        plain["blk.1.ffn_down.weight"] == mix.defaultType
          && imat["blk.1.ffn_down.weight"] == guarded)
      #expect(imat["blk.2.ffn_down.weight"] == mix.defaultType)
    }
    let xs = try GGUFMixes.types(for: t, model: llama, options: LlamaMixOptions(mix: .iq4_xs))
    let xsImat = try GGUFMixes.types(
      for: t, model: llama, options: LlamaMixOptions(mix: .iq4_xs, hasImatrix: true))
    #expect(xs["blk.0.ffn_down.weight"] == .q5_K && xsImat["blk.0.ffn_down.weight"] == .iq4_xs)
    #expect(xs["blk.0.attn_v.weight"] == .q5_K)  // GQA 4
  }

  /// An MoE model's ffn tensors need a blk.N. layer inside the model.
  @Test func moeLayerErrors() {
    let moe = LlamaModelFacts(
      architecture: "llama", layerCount: 2, headCount: 8, kvHeadCount: 8, expertCount: 8)
    let bad = [
      LlamaTensorInfo(name: "blk.7.ffn_down_exps.weight", rowLength: 256, dimensionCount: 3)
    ]
    #expect(
      throws: LlamaMixError(
        tensor: "blk.7.ffn_down_exps.weight", message: "bad layer 7: must be in [0, 2)")
    ) {
      try GGUFMixes.types(for: bad, model: moe, options: LlamaMixOptions(mix: .q4_k_m))
    }
  }
}
