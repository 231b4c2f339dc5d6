import QoptFormats
import QoptIR

/// GGUF files of the llama.cpp architectures beyond `llama` (qwen3, qwen3moe, gemma3), as
/// llama.cpp's `convert_hf_to_gguf.py` writes them and qopt's GGUF backend does: the
/// `<arch>.*` metadata becomes the config.json those converters read (so one config reader,
/// `HFImporter.readConfig`, serves both frontends), stacked experts are split back into
/// per-expert weights, Gemma3's stored `1 + w` norms lose their 1, and Q/K rows stay as they
/// are (these architectures use NeoX RoPE, which the converter does not permute for).
extension GGUFImporter {
  /// GGUF architecture → Hugging Face `model_type`.
  static let familyArchitectures = [
    "qwen3": "qwen3", "qwen3moe": "qwen3_moe", "gemma3": "gemma3_text",
  ]

  /// The config.json equivalent of `g`'s metadata for a family architecture; nil for others.
  static func familyConfig(_ g: GGUFFile) throws(FrontendError) -> JSON? {
    guard let arch = g["general.architecture"]?.stringValue,
      let modelType = familyArchitectures[arch]
    else { return nil }
    func fail(_ key: String, _ m: String) -> FrontendError {
      FrontendError(file: g.path, offset: g.offset(ofKey: key), "metadata '\(key)': \(m)")
    }
    func int(_ k: String, _ dv: Int? = nil) throws(FrontendError) -> Int {
      guard let v = g[arch + "." + k] else {
        if let dv { return dv }
        throw FrontendError(file: g.path, key: arch + "." + k, "missing metadata key")
      }
      guard let i = v.intValue, i > 0 else {
        throw fail(arch + "." + k, "must be a positive integer")
      }
      return i
    }
    func float(_ k: String, _ dv: Double) throws(FrontendError) -> Double {
      guard let v = g[arch + "." + k] else { return dv }
      guard let x = v.doubleValue else { throw fail(arch + "." + k, "must be a number") }
      // f32 metadata: the shortest decimal that reads back to the same f32 (1e-06).
      return Double("\(Float(x))") ?? x
    }
    if let t = g[arch + ".rope.scaling.type"]?.stringValue, t != "none" {
      throw fail(
        arch + ".rope.scaling.type", "rope scaling '\(t)' is not supported (supported: none)")
    }
    let hidden = try int("embedding_length"), heads = try int("attention.head_count")
    let layers = try int("block_count")
    let embd = g.tensor(named: "token_embd.weight")
    var pairs: [(String, JSON)] = [
      ("model_type", .string(modelType)),
      ("hidden_size", .int(hidden)),
      ("intermediate_size", .int(try int("feed_forward_length"))),
      ("num_hidden_layers", .int(layers)),
      ("num_attention_heads", .int(heads)),
      ("num_key_value_heads", .int(try int("attention.head_count_kv", heads))),
      ("head_dim", .int(try int("attention.key_length", hidden / max(heads, 1)))),
      ("max_position_embeddings", .int(try int("context_length", 2048))),
      ("rms_norm_eps", .double(try float("attention.layer_norm_rms_epsilon", 1e-6))),
      (
        "vocab_size",
        .int(
          try int(
            "vocab_size", g["tokenizer.ggml.tokens"]?.arrayValue?.count ?? embd?.dims.last ?? 0))
      ),
      ("tie_word_embeddings", .bool(g.tensor(named: "output.weight") == nil)),
    ]
    if let b = g["tokenizer.ggml.bos_token_id"]?.intValue {
      pairs.append(("bos_token_id", .int(b)))
    }
    if let e = g["tokenizer.ggml.eos_token_id"]?.intValue {
      pairs.append(("eos_token_id", .int(e)))
    }
    let theta = try float("rope.freq_base", arch == "gemma3" ? 1_000_000 : 10000)
    switch arch {
    case "qwen3moe":
      pairs += [
        ("num_experts", .int(try int("expert_count"))),
        ("num_experts_per_tok", .int(try int("expert_used_count"))),
        ("moe_intermediate_size", .int(try int("expert_feed_forward_length"))),
        // llama.cpp's qwen3moe graph always renormalises the top-k weights.
        ("norm_topk_prob", .bool(true)),
      ]
      pairs.append(("rope_theta", .double(theta)))
    case "gemma3":
      // llama.cpp: an explicit per-layer pattern, else every 6th layer global
      // (`load_swa_pattern(ml, 6)`: layer i slides when i % 6 < 5).
      var sliding = (0..<layers).map { $0 % 6 < 5 }
      if let p = g[arch + ".attention.sliding_window_pattern"] {
        guard let a = p.arrayValue?.compactMap(\.boolValue), a.count == layers else {
          throw fail(arch + ".attention.sliding_window_pattern", "must be \(layers) booleans")
        }
        sliding = a
      }
      let local = try float("rope.freq_base_swa", 10000)
      pairs += [
        ("sliding_window", .int(try int("attention.sliding_window", 4096))),
        (
          "layer_types",
          .array(sliding.map { .string($0 ? "sliding_attention" : "full_attention") })
        ),
        (
          "rope_parameters",
          .object([
            (
              "full_attention",
              .object([("rope_theta", .double(theta)), ("rope_type", .string("default"))])
            ),
            (
              "sliding_attention",
              .object([("rope_theta", .double(local)), ("rope_type", .string("default"))])
            ),
          ])
        ),
        ("hidden_activation", .string("gelu_pytorch_tanh")),
      ]
    default:
      pairs.append(("rope_theta", .double(theta)))
    }
    return .object(pairs)
  }

  /// Puts family tensor `t` into `store` under its Hugging Face name(s).
  static func addFamilyTensor(
    _ g: GGUFFile, _ t: GGUFTensorInfo, arch: String, headDim: Int, keepQuantized: Bool,
    store: WeightStore, sourceTypes: inout [String: String]
  ) throws(FrontendError) {
    guard GGUFDequant.supports(t.type) else {
      throw FrontendError(
        file: g.path, offset: t.infoOffset,
        "tensor '\(t.name)': ggml type \(t.type.name) cannot be decoded (supported: f32, f16, bf16, q8_0, q4_0, q4_1, q4_k, q6_k)"
      )
    }
    if arch == "qwen3moe", let (layer, projection) = GGUFFamilyNames.stackedExperts(t.name) {
      guard t.shape.count == 3, t.shape[0] > 0 else {
        throw FrontendError(
          file: g.path, offset: t.infoOffset,
          "tensor '\(t.name)' has shape \(t.shape); stacked experts are [experts, rows, cols]")
      }
      let all = deferred(g, t, unpermuteHeads: nil, headDim: headDim).floats()
      let n = t.shape[0], per = all.count / n
      for e in 0..<n {
        let hf = "model.layers.\(layer).mlp.experts.\(e).\(projection).weight"
        store.set(
          hf,
          .dense(
            TensorData(
              floats: Array(all[(e * per)..<((e + 1) * per)]), shape: Array(t.shape.dropFirst()))))
        sourceTypes[hf] = t.type.name
      }
      return
    }
    guard let hf = GGUFFamilyNames.hf(t.name, arch: arch) else {
      throw FrontendError(
        file: g.path, offset: t.infoOffset,
        "unexpected tensor '\(t.name)' for the \(arch) architecture")
    }
    if arch == "gemma3" && hf.hasSuffix("norm.weight") {
      // The file holds `1 + w` (`Gemma3Model.norm_shift`); the IR's rms_norm adds the 1.
      let w = deferred(g, t, unpermuteHeads: nil, headDim: headDim).floats().map { $0 - 1 }
      store.set(hf, .dense(TensorData(floats: w, shape: t.shape)))
    } else if keepQuantized, let q = quantized(g, t, unpermuteHeads: nil, headDim: headDim) {
      store.set(hf, .quantized(q))
    } else {
      store.set(hf, .dense(deferred(g, t, unpermuteHeads: nil, headDim: headDim)))
    }
    sourceTypes[hf] = t.type.name
  }
}
