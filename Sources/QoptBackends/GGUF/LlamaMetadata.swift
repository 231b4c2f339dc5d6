import QoptFormats
import QoptIR

/// `general.*` and `llama.*` metadata from the module's configuration (reference/gguf.md §2–§3).
///
/// Values come from the Hugging Face config fields the importer put in module attributes
/// (`hidden_size`, …); when a field is missing, a `llama.*` attribute of the same meaning (as a
/// GGUF importer may carry it) is used.
enum LlamaMetadata {
  static func make(_ module: Module, config: ModelConfig, fileType: UInt32, quantized: Bool) -> [(String, GGUFValue)] {
    var kv: [(String, GGUFValue)] = [("general.architecture", .string("llama")), ("general.type", .string("model"))]
    for key in ["general.name", "general.basename", "general.finetune", "general.size_label", "general.license", "general.organization"] {
      if let s = module.attributes[key]?.stringValue { kv.append((key, .string(s))) }
    }
    if kv.count == 2, let name = module.name { kv.append(("general.name", .string(name))) }
    func attr(_ k: String) -> Attribute? { module.attributes[k] }
    func u32(_ key: String, _ hf: String, default d: Int? = nil) {
      if let v = config.int(hf) ?? attr(key)?.intValue ?? d, v >= 0 { kv.append((key, .u32(UInt32(v)))) }
    }
    func f32(_ key: String, _ hf: String, default d: Double? = nil) {
      if let v = config.double(hf) ?? attr(key)?.doubleValue ?? d { kv.append((key, .f32(Float(v)))) }
    }
    u32("llama.vocab_size", "vocab_size")
    u32("llama.context_length", "max_position_embeddings")
    u32("llama.embedding_length", "hidden_size")
    u32("llama.block_count", "num_hidden_layers")
    u32("llama.feed_forward_length", "intermediate_size")
    u32("llama.attention.head_count", "num_attention_heads")
    u32("llama.attention.head_count_kv", "num_key_value_heads")
    let heads = config.int("num_attention_heads") ?? attr("llama.attention.head_count")?.intValue
    let hidden = config.int("hidden_size") ?? attr("llama.embedding_length")?.intValue
    let defaultHeadDim = (heads != nil && hidden != nil && heads! > 0) ? hidden! / heads! : nil  // safe: checked
    let headDim = config.int("head_dim") ?? attr("llama.rope.dimension_count")?.intValue ?? defaultHeadDim
    if let hd = headDim { kv.append(("llama.rope.dimension_count", .u32(UInt32(hd)))) }
    f32("llama.rope.freq_base", "rope_theta", default: 10000)
    f32("llama.attention.layer_norm_rms_epsilon", "rms_norm_eps")
    if let hd = headDim, let d = defaultHeadDim, hd != d {
      kv.append(("llama.attention.key_length", .u32(UInt32(hd))))
      kv.append(("llama.attention.value_length", .u32(UInt32(hd))))
    }
    if let rs = config.json["rope_scaling"], rs != .null, let t = rs["rope_type"]?.stringValue ?? rs["type"]?.stringValue {
      if t == "linear" || t == "yarn" {
        kv.append(("llama.rope.scaling.type", .string(t)))
        if let f = rs["factor"]?.doubleValue { kv.append(("llama.rope.scaling.factor", .f32(Float(f)))) }
        if let o = rs["original_max_position_embeddings"]?.intValue { kv.append(("llama.rope.scaling.original_context_length", .u32(UInt32(o)))) }
      }
    }
    kv.append(("general.file_type", .u32(fileType)))
    if quantized { kv.append(("general.quantization_version", .u32(2))) }
    kv.append(("general.alignment", .u32(UInt32(GGUFFileWriter.alignment))))
    return kv
  }

  /// Heads and head dimension for the Q/K permutation.
  static func heads(_ config: ModelConfig, _ module: Module) -> (q: Int, kv: Int)? {
    guard let q = config.int("num_attention_heads") ?? module.attributes["llama.attention.head_count"]?.intValue else { return nil }
    let kv = config.int("num_key_value_heads") ?? module.attributes["llama.attention.head_count_kv"]?.intValue ?? q
    return (q, kv)
  }
}
