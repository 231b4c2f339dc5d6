import QoptIR

/// The source model's Hugging Face configuration as the importer left it: the `hf_config`
/// module attribute (the original config.json text) merged with the module's other attributes
/// (which win, since passes may have updated them). GGUF-style keys (`tokenizer.ggml.*`,
/// `general.*`, `llama.*`) are metadata of their own and stay out of config.json.
struct ModelConfig {
  /// The merged config as a JSON object, keys sorted as transformers writes them.
  var json: JSON

  init(_ module: Module) {
    var pairs: [(String, JSON)] = []
    if let text = module.attributes["hf_config"]?.stringValue, let parsed = try? JSON.parse(text),
      let p = parsed.objectPairs
    {
      pairs = p
    }
    func set(_ key: String, _ j: JSON) {
      if let i = pairs.firstIndex(where: { $0.0 == key }) {
        pairs[i].1 = j
      } else {
        pairs.append((key, j))
      }
    }
    for (key, value) in module.attributes
    where !Self.internalKeys.contains(key) && !key.contains(".") {
      // Symbols point into the weight store (`tokenizer = @"tokenizer.json"`); not config.
      if case .symbol = value { continue }
      if key == "rope_scaling", let o = Self.ropeScaling(value) {
        set(key, o)
        continue
      }
      guard let j = JSON(attribute: value) else { continue }
      set(key, j)
    }
    // What vLLM and transformers need to pick the model class and dtype. A module built by
    // hand (no importer) says only `arch = "llama"`; that is model_type llama.
    if !pairs.contains(where: { $0.0 == "model_type" }),
      module.attributes["arch"]?.stringValue == "llama"
    {
      set("model_type", .string("llama"))
    }
    if !pairs.contains(where: { $0.0 == "architectures" }),
      let mt = pairs.first(where: { $0.0 == "model_type" })?.1.stringValue,
      let arch = Self.architectures[mt]
    {
      set("architectures", .array([.string(arch)]))
    }
    if !pairs.contains(where: { $0.0 == "torch_dtype" }), let d = Self.torchDType(module) {
      set("torch_dtype", .string(d))
    }
    pairs.sort { $0.0 < $1.0 }
    json = .object(pairs)
  }

  /// Attributes the IR keeps for itself.
  static let internalKeys: Set<String> = [
    "hf_config", "arch", "tokenizer",
    // Family features the importer records for the IR; config.json says them its own way.
    "qk_norm", "norm_weight_offset", "rotary_dim",
  ]
  static let architectures = [
    "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
  ]

  /// The frontend's compact `rope_scaling = ["llama3", factor, low, high, original]` as the
  /// config.json object.
  static func ropeScaling(_ a: Attribute) -> JSON? {
    guard let xs = a.arrayValue, xs.count == 5, let t = xs[0].stringValue,
      let f = xs[1].doubleValue,
      let lo = xs[2].doubleValue, let hi = xs[3].doubleValue, let o = xs[4].intValue
    else { return nil }
    return .object([
      ("factor", .double(f)), ("high_freq_factor", .double(hi)), ("low_freq_factor", .double(lo)),
      ("original_max_position_embeddings", .int(o)), ("rope_type", .string(t)),
    ])
  }

  /// The dtype of the embedding table (the model dtype), as transformers names it.
  static func torchDType(_ module: Module) -> String? {
    guard let t = module.weights.dense("model.embed_tokens.weight") else { return nil }
    switch t.dtype {
    case .f32: return "float32"
    case .f16: return "float16"
    case .bf16: return "bfloat16"
    default: return nil
    }
  }

  func int(_ key: String) -> Int? { json[key]?.intValue }
  func double(_ key: String) -> Double? { json[key]?.doubleValue }
  func string(_ key: String) -> String? { json[key]?.stringValue }
  func bool(_ key: String) -> Bool? { json[key]?.boolValue }
}
