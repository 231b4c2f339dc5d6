import QoptFormats
import QoptIR

/// The llama.cpp architecture a module is written as, and what that architecture changes in
/// the file: tensor names, stacked MoE experts, Gemma's stored `1 + w` norms, and the
/// `<arch>.*` metadata. Each rule follows llama.cpp's `convert_hf_to_gguf.py`
/// (`conversion/qwen.py` `Qwen3Model`, `Qwen2MoeModel.modify_tensors`, `Qwen3MoeModel`;
/// `conversion/gemma.py` `Gemma3Model`; `conversion/base.py` `TextModel.set_gguf_parameters`).
///
/// `llama` (llama, mistral, qwen2) keeps the historical path (`LlamaTensorNames`,
/// `LlamaMetadata`, Q/K rows permuted); the other architectures use NeoX RoPE in llama.cpp, so
/// their Q/K rows are written in Hugging Face order, as the converter does.
package enum GGUFArchitecture: String, Sendable {
  case llama, qwen3, qwen3moe, gemma3

  /// The architecture for the module's `model_type`.
  static func of(_ config: ModelConfig, output: String) throws(BackendError) -> GGUFArchitecture {
    let mt = config.json["model_type"]?.stringValue ?? "llama"
    switch mt {
    case "llama", "mistral", "qwen2": return .llama
    case "qwen3": return .qwen3
    case "qwen3_moe": return .qwen3moe
    case "gemma3_text": return .gemma3
    default:
      throw BackendError(
        output: output,
        "model_type '\(mt)' has no GGUF layout in qopt (supported: llama, mistral, qwen2, qwen3, "
          + "qwen3_moe, gemma3_text); write it with -emit=compressed-tensors")
    }
  }

  /// The GGUF name of `hf`, or nil when the architecture has no such tensor. Expert tensors
  /// are handled by `expert(_:)`.
  func gguf(_ hf: String) -> String? {
    if self == .llama { return LlamaTensorNames.gguf(hf) }
    if let g = GGUFFamilyNames.global[hf] { return g }
    guard let (layer, tail) = Self.layerTail(hf) else { return nil }
    for suffix in [".weight", ".bias"] where tail.hasSuffix(suffix) {
      if let g = GGUFFamilyNames.perLayer(arch: rawValue)[String(tail.dropLast(suffix.count))] {
        return "blk.\(layer).\(g)\(suffix)"
      }
    }
    return nil
  }

  /// An expert weight `model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight` as
  /// (layer, expert, the stacked GGUF name `blk.L.ffn_{gate,up,down}_exps.weight`).
  func expert(_ hf: String) -> (layer: Int, expert: Int, gguf: String)? {
    guard self == .qwen3moe, let (layer, tail) = Self.layerTail(hf) else { return nil }
    let parts = tail.split(separator: ".")
    guard parts.count == 5, parts[0] == "mlp", parts[1] == "experts", let e = Int(parts[2]),
      parts[4] == "weight"
    else { return nil }
    guard let stem = GGUFFamilyNames.expertStems[String(parts[3])] else { return nil }
    return (layer, e, "blk.\(layer).\(stem).weight")
  }

  /// Gemma3 stores `1 + w` for every `*norm.weight` (`Gemma3Model.norm_shift`).
  func normShift(_ hf: String) -> Float {
    self == .gemma3 && hf.hasSuffix("norm.weight") ? 1 : 0
  }

  /// Whether Q/K rows are permuted into llama.cpp's adjacent-pair RoPE order.
  var permutesQK: Bool { self == .llama }

  private static func layerTail(_ hf: String) -> (Int, Substring)? {
    guard hf.hasPrefix("model.layers.") else { return nil }
    let rest = hf.dropFirst("model.layers.".count)
    guard let dot = rest.firstIndex(of: "."), let n = Int(rest[..<dot]) else { return nil }
    return (n, rest[rest.index(after: dot)...])
  }

  /// `general.*` and `<arch>.*` metadata as `TextModel.set_gguf_parameters` and the
  /// architecture's class write them. Beyond the converter: `<arch>.vocab_size` (the converter
  /// writes it with the vocabulary; qopt models may have none) and, for gemma3, the per-layer
  /// `attention.sliding_window_pattern` bool array that llama.cpp's `load_swa_pattern` reads
  /// (the converter leaves llama.cpp's default pattern of 6, which a checkpoint's
  /// `layer_types` need not follow).
  func metadata(
    _ module: Module, config: ModelConfig, fileType: UInt32, quantized: Bool, output: String
  ) throws(BackendError) -> [(String, GGUFValue)] {
    let a = rawValue
    var kv: [(String, GGUFValue)] = [
      ("general.architecture", .string(a)), ("general.type", .string("model")),
    ]
    for key in [
      "general.name", "general.basename", "general.finetune", "general.size_label",
      "general.license", "general.organization",
    ] {
      if let s = module.attributes[key]?.stringValue { kv.append((key, .string(s))) }
    }
    let j = config.json
    func need(_ k: String) throws(BackendError) -> Int {
      guard let v = config.int(k) else {
        throw BackendError(output: output, "config key '\(k)' is missing (needed for \(a) GGUF)")
      }
      return v
    }
    func u32(_ key: String, _ v: Int) { kv.append(("\(a).\(key)", .u32(UInt32(v)))) }
    let layers = try need("num_hidden_layers")
    u32("block_count", layers)
    u32("context_length", try need("max_position_embeddings"))
    u32("embedding_length", try need("hidden_size"))
    u32("feed_forward_length", try need("intermediate_size"))
    u32("attention.head_count", try need("num_attention_heads"))
    u32("attention.head_count_kv", try need("num_key_value_heads"))
    let rope = j["rope_parameters"]
    let full = rope?["full_attention"] ?? rope
    let theta = full?["rope_theta"]?.doubleValue ?? config.double("rope_theta") ?? 10000
    kv.append(("\(a).rope.freq_base", .f32(Float(theta))))
    if let swa = rope?["sliding_attention"]?["rope_theta"]?.doubleValue {
      kv.append(("\(a).rope.freq_base_swa", .f32(Float(swa))))
    }
    kv.append(
      ("\(a).attention.layer_norm_rms_epsilon", .f32(Float(config.double("rms_norm_eps") ?? 1e-6))))
    if self == .qwen3moe {
      u32(
        "expert_count",
        try need(config.int("num_experts") != nil ? "num_experts" : "num_local_experts"))
      u32("expert_used_count", try need("num_experts_per_tok"))
      if j["norm_topk_prob"]?.boolValue != true {
        // llama.cpp's qwen3moe graph always renormalises the top-k weights.
        throw BackendError(
          output: output,
          "norm_topk_prob = false cannot be written: llama.cpp's qwen3moe always renormalises the top-k weights"
        )
      }
    }
    if let hd = config.int("head_dim") {
      u32("attention.key_length", hd)
      u32("attention.value_length", hd)
    }
    if self == .qwen3moe { u32("expert_feed_forward_length", try need("moe_intermediate_size")) }
    if self == .gemma3 {
      if let w = config.int("sliding_window") { u32("attention.sliding_window", w) }
      if let types = j["layer_types"]?.arrayValue, types.count == layers {
        kv.append(
          (
            "\(a).attention.sliding_window_pattern",
            .array(
              elementType: 7, types.map { .bool($0.stringValue == "sliding_attention") })
          ))
      }
    }
    u32("vocab_size", try need("vocab_size"))
    kv.append(("general.file_type", .u32(fileType)))
    if quantized { kv.append(("general.quantization_version", .u32(2))) }
    kv.append(("general.alignment", .u32(UInt32(GGUFFileWriter.alignment))))
    return kv
  }
}
