import QoptBackends
import QoptFormats
import QoptFrontends
import QoptIR
import QoptPasses
import QoptRuntime
import QoptTestSupport
import Testing

// GGUF for the families llama.cpp has: qwen3, qwen3moe, gemma3. The names and row-major shapes
// below are what llama.cpp's convert_hf_to_gguf.py writes for the fixtures (conversion/qwen.py
// `Qwen3Model`, `Qwen2MoeModel.modify_tensors` stacking experts as [experts, rows, cols];
// conversion/gemma.py `Gemma3Model`, tensor_mapping.py for the names) and what llama.cpp's
// loader asks for (src/models/qwen3moe.cpp: ffn_gate_exps {n_embd, n_ff_exp, n_expert}, i.e.
// [experts, n_ff_exp, n_embd] row-major). The file reads back in qopt with the same tensors,
// and the read-back model gives the same logits, still within 1e-4 of transformers.

/// The converter's tensors for a two-layer fixture with hidden 64, 4 heads / 2 KV heads of 16,
/// intermediate 128 (MoE: 8 experts of 32), vocabulary 256.
private func converterTensors(_ family: String) -> [String: [Int]] {
  var t: [String: [Int]] = ["token_embd.weight": [256, 64], "output_norm.weight": [64]]
  for i in 0..<2 {
    let b = "blk.\(i)."
    t[b + "attn_norm.weight"] = [64]
    t[b + "attn_q.weight"] = [64, 64]
    t[b + "attn_k.weight"] = [32, 64]
    t[b + "attn_v.weight"] = [32, 64]
    t[b + "attn_output.weight"] = [64, 64]
    t[b + "attn_q_norm.weight"] = [16]
    t[b + "attn_k_norm.weight"] = [16]
    t[b + "ffn_norm.weight"] = [64]
    if family == "qwen3_moe" {
      t[b + "ffn_gate_inp.weight"] = [8, 64]
      t[b + "ffn_gate_exps.weight"] = [8, 32, 64]
      t[b + "ffn_up_exps.weight"] = [8, 32, 64]
      t[b + "ffn_down_exps.weight"] = [8, 64, 32]
    } else {
      t[b + "ffn_gate.weight"] = [128, 64]
      t[b + "ffn_up.weight"] = [128, 64]
      t[b + "ffn_down.weight"] = [64, 128]
    }
    if family == "gemma3_text" {
      t[b + "post_attention_norm.weight"] = [64]
      t[b + "post_ffw_norm.weight"] = [64]
    }
  }
  if family == "qwen3_moe" { t["output.weight"] = [256, 64] }  // untied head
  return t
}

/// An f32 tensor's bytes as floats.
private func f32s(_ raw: UnsafeRawBufferPointer) -> [Float] {
  (0..<(raw.count / 4)).map {
    Float(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))
  }
}

@Suite(.serialized) struct ArchitectureGGUFTests {
  static let families = ["qwen3", "qwen3_moe", "gemma3_text"]

  @Test(arguments: families) func ggufRoundTrip(_ family: String) throws {
    let m = try ModelImporter.load(path: archFixtures + "/" + family)
    let dir = TestTemporary.makeDirectory("arch-gguf-\(family)")
    defer { TestTemporary.remove(dir) }
    let path = dir + "/model.gguf"
    try GGUFEmitter(types: GGUFTypeSelection(defaultType: .f32)).emit(m, to: path)

    let g = try GGUFFile(path: path)
    let arch = try #require(
      ["qwen3": "qwen3", "qwen3_moe": "qwen3moe", "gemma3_text": "gemma3"][family])
    #expect(g["general.architecture"]?.stringValue == arch)
    var written: [String: [Int]] = [:]
    for t in g.tensors { written[t.name] = t.shape }
    #expect(
      written == converterTensors(family), "\(family): names/shapes differ from the converter's")
    #expect(g["\(arch).attention.key_length"]?.intValue == 16)
    #expect(g["\(arch).attention.head_count_kv"]?.intValue == 2)
    if family == "qwen3_moe" {
      #expect(g["qwen3moe.expert_count"]?.intValue == 8)
      #expect(g["qwen3moe.expert_used_count"]?.intValue == 2)
      #expect(g["qwen3moe.expert_feed_forward_length"]?.intValue == 32)
    }
    if family == "gemma3_text" {
      #expect(g["gemma3.attention.sliding_window"]?.intValue == 8)
      #expect(g["gemma3.rope.freq_base_swa"]?.doubleValue == 10000)
      #expect(g["gemma3.rope.freq_base"]?.doubleValue == 1_000_000)
      #expect(
        g["gemma3.attention.sliding_window_pattern"]?.arrayValue?.compactMap(\.boolValue)
          == [true, false])
      // The file holds 1 + w for Gemma's norms (Gemma3Model.norm_shift).
      let w = try #require(m.weights.dense("model.layers.0.input_layernorm.weight")).floats()
      let t = try #require(g.tensor(named: "blk.0.attn_norm.weight"))
      let stored = f32s(g.bytes(of: t))
      #expect(stored == w.map { $0 + 1 })
    }
    if family == "qwen3_moe" {
      // Expert 3 of layer 1 is the fourth slab of the stacked tensor.
      let e3 = try #require(m.weights.dense("model.layers.1.mlp.experts.3.down_proj.weight"))
        .floats()
      let t = try #require(g.tensor(named: "blk.1.ffn_down_exps.weight"))
      let all = f32s(g.bytes(of: t))
      #expect(Array(all[(3 * 64 * 32)..<(4 * 64 * 32)]) == e3)
    }

    // Back into qopt: the same tensors under the same names, the same logits.
    let back = try ModelImporter.load(path: path)
    try back.verify()
    let names = m.allOps.compactMap(\.paramName).sorted()
    #expect(back.allOps.compactMap(\.paramName).sorted() == names)
    for name in names {
      let a = try #require(m.weights.dense(name)).floats()
      let b = try #require(back.weights.dense(name), "\(name) missing after the round trip")
        .floats()
      #expect(a == b, "\(name) differs after the GGUF round trip")
    }
    let ref = try ArchReference(family: family)
    for ids in ref.ids {
      let (x, y) = (
        try Interpreter(module: m).run(ids: ids), try Interpreter(module: back).run(ids: ids)
      )
      #expect(x.data == y.data, "\(family): logits differ after the GGUF round trip")
    }
  }

  /// Llama 3 rope scaling is written as llama.cpp's `rope_freqs.weight`: one divisor per rotated
  /// pair, first in the file (conversion/llama.py `LlamaModel.generate_extra_tensors`). The
  /// fixture (θ 500000, head_dim 16, original context 32, factors 8 / 1 / 4) has wavelengths
  /// 6.3 (< 32/4: divisor 1) and 32.4 and up (> 32/1: divisor 8); the converter's code run in
  /// float32 numpy gives [1, 8, 8, 8, 8, 8, 8, 8].
  @Test func llama3RopeFreqs() throws {
    let m = try ModelImporter.load(path: archFixtures + "/llama3")
    let dir = TestTemporary.makeDirectory("arch-gguf-llama3")
    defer { TestTemporary.remove(dir) }
    try GGUFEmitter(types: GGUFTypeSelection(defaultType: .f32)).emit(m, to: dir + "/m.gguf")
    let g = try GGUFFile(path: dir + "/m.gguf")
    #expect(g["general.architecture"]?.stringValue == "llama")
    #expect(g.tensors.first?.name == "rope_freqs.weight")
    let t = try #require(g.tensor(named: "rope_freqs.weight"))
    #expect(t.shape == [8])
    #expect(f32s(g.bytes(of: t)) == [1, 8, 8, 8, 8, 8, 8, 8])
    #expect(g["llama.rope.freq_base"]?.doubleValue == 500000)
  }

  /// Quantized blocks of a stacked tensor: each expert's rows in order, as one tensor.
  @Test func stackedExpertsQuantizeAsRows() throws {
    let m = try ModelImporter.load(path: archFixtures + "/qwen3_moe")
    let dir = TestTemporary.makeDirectory("arch-gguf-q8")
    defer { TestTemporary.remove(dir) }
    let path = dir + "/model.gguf"
    try GGUFEmitter(types: GGUFTypeSelection(defaultType: .q8_0)).emit(m, to: path)
    let back = try ModelImporter.load(path: path)
    for e in 0..<8 {
      let name = "model.layers.0.mlp.experts.\(e).gate_proj.weight"
      let src = try #require(m.weights.dense(name))
      let bytes = GGUFEmitter.encodeDense(src, as: .q8_0, rowOrder: nil, threads: 1)
      let want = bytes.withUnsafeBytes { BlockQuantizers.decode($0, count: src.count, type: .q8_0) }
      #expect(try #require(back.weights.dense(name)).floats() == want, "\(name)")
    }
  }

  /// Families llama.cpp's converter handles differently (phi3's fused attn_qkv, mixtral's
  /// llama-architecture experts) are refused with a located error, never written wrongly.
  @Test(arguments: ["phi3", "mixtral"]) func unsupportedFamiliesAreRefused(_ family: String) throws
  {
    let m = try ModelImporter.load(path: archFixtures + "/" + family)
    #expect(throws: BackendError.self) {
      try GGUFEmitter().check(m, output: "out.gguf")
    }
  }
}
