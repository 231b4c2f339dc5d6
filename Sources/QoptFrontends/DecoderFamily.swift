import QoptFormats
import QoptIR

/// What a decoder family adds to the Llama block, as read from config.json. The Llama family
/// (llama, mistral, qwen2) uses none of it; each field names the families that set it.
public struct DecoderFamily: Hashable, Sendable {
  /// Mixture-of-experts MLP (qwen3_moe, mixtral).
  public struct MoE: Hashable, Sendable {
    public var experts: Int
    public var topK: Int
    /// Renormalise the top-k probabilities to sum 1 (`norm_topk_prob`; always for Mixtral).
    public var normalize: Bool
    public var intermediateSize: Int
    /// Layers that keep a dense MLP (Qwen3-MoE's `mlp_only_layers` and `decoder_sparse_step`).
    public var denseLayers: Set<Int>
    /// Checkpoint names: `mlp.gate` + `gate_proj/up_proj/down_proj` (qwen3_moe) or
    /// `block_sparse_moe.gate` + `w1/w3/w2` (mixtral).
    public var mixtralNames: Bool
  }

  /// Per-head RMSNorm of q and k before RoPE (qwen3, qwen3_moe, gemma3_text).
  public var qkNorm = false
  /// Added to every norm weight: Gemma's `(1 + w)` RMSNorm.
  public var normWeightOffset = 0.0
  /// Gemma's norms after attention and around the MLP (`post_attention_layernorm` on the
  /// attention output, `pre_feedforward_layernorm`, `post_feedforward_layernorm`).
  public var sandwichNorms = false
  /// `gelu_tanh` instead of `silu` on the gate (gemma3_text).
  public var geluTanh = false
  /// The embedding multiplier (gemma3_text: √hidden, rounded to the embedding's dtype).
  public var embeddingScale: Double?
  /// Layers with sliding-window attention and their window and RoPE base (gemma3_text).
  public var slidingLayers: Set<Int> = []
  public var slidingWindow: Int?
  public var localRopeTheta: Double?
  /// Attention score scale when not 1/√head_dim (`query_pre_attn_scalar^-½`).
  public var attentionScale: Double?
  /// `attn_logit_softcapping`.
  public var attentionSoftcap: Double?
  /// Dimensions of each head that rotate (phi3's `partial_rotary_factor`); nil: all.
  public var rotaryDim: Int?
  /// Fused `qkv_proj` and `gate_up_proj` (phi3).
  public var fusedProjections = false
  public var moe: MoE?

  public init() {}

  /// The module attributes that record the family (beside `LlamaConfig.attributes`).
  var attributes: AttributeDict {
    var a = AttributeDict()
    if qkNorm { a["qk_norm"] = .bool(true) }
    if normWeightOffset != 0 { a["norm_weight_offset"] = .float(normWeightOffset) }
    if let m = moe {
      a["num_experts"] = .int(m.experts)
      a["num_experts_per_tok"] = .int(m.topK)
      a["norm_topk_prob"] = .bool(m.normalize)
      a["moe_intermediate_size"] = .int(m.intermediateSize)
    }
    if let w = slidingWindow { a["sliding_window"] = .int(w) }
    if let r = rotaryDim { a["rotary_dim"] = .int(r) }
    return a
  }
}

extension HFImporter {
  /// The model types beyond the Llama family, each with the config keys its block reads.
  static let familyModelTypes = ["qwen3", "qwen3_moe", "mixtral", "gemma3_text", "phi3"]

  /// Reads the family features of `model_type` from config.json `j` (transformers' names and
  /// defaults, transformers 5's `rope_parameters` or the older top-level keys).
  static func readFamily(
    _ j: JSON, modelType mt: String, config c: LlamaConfig, path: String
  ) throws(FrontendError) -> DecoderFamily {
    var f = DecoderFamily()
    func int(_ k: String, _ dv: Int? = nil) throws(FrontendError) -> Int {
      guard let v = j[k], v != .null else {
        if let dv { return dv }
        throw FrontendError(file: path, key: k, "missing (required for model_type '\(mt)')")
      }
      guard let i = v.intValue, i > 0 else {
        throw FrontendError(file: path, key: k, "must be a positive integer")
      }
      return i
    }
    switch mt {
    case "qwen3":
      f.qkNorm = true
    case "qwen3_moe":
      f.qkNorm = true
      let experts = try int(j["num_experts"] != nil ? "num_experts" : "num_local_experts")
      let step = try int("decoder_sparse_step", 1)
      var dense = Set((j["mlp_only_layers"]?.arrayValue ?? []).compactMap(\.intValue))
      for i in 0..<c.numHiddenLayers where (i + 1) % step != 0 { dense.insert(i) }
      f.moe = .init(
        experts: experts, topK: try int("num_experts_per_tok"),
        normalize: j["norm_topk_prob"]?.boolValue ?? false,
        intermediateSize: try int("moe_intermediate_size"), denseLayers: dense, mixtralNames: false)
    case "mixtral":
      f.moe = .init(
        experts: try int("num_local_experts"), topK: try int("num_experts_per_tok"),
        normalize: true,
        intermediateSize: c.intermediateSize, denseLayers: [], mixtralNames: true)
    case "gemma3_text":
      f.qkNorm = true
      f.normWeightOffset = 1
      f.sandwichNorms = true
      f.geluTanh = true
      f.embeddingScale = Double(c.hiddenSize).squareRoot()
      f.slidingWindow = try int("sliding_window", 4096)
      if let types = j["layer_types"]?.arrayValue {
        guard types.count == c.numHiddenLayers else {
          throw FrontendError(
            file: path, key: "layer_types",
            "has \(types.count) entries for \(c.numHiddenLayers) layers")
        }
        for (i, t) in types.enumerated() where t.stringValue == "sliding_attention" {
          f.slidingLayers.insert(i)
        }
      } else {
        let pattern = try int("sliding_window_pattern", try int("_sliding_window_pattern", 6))
        for i in 0..<c.numHiddenLayers where (i + 1) % pattern != 0 { f.slidingLayers.insert(i) }
      }
      var local = j["rope_local_base_freq"]?.doubleValue ?? 10000
      if let rp = j["rope_parameters"], let s = rp["sliding_attention"] {
        local = s["rope_theta"]?.doubleValue ?? local
        for key in ["sliding_attention", "full_attention"] {
          if let t = rp[key]?["rope_type"]?.stringValue, t != "default" {
            throw FrontendError(
              file: path, key: "rope_parameters.\(key).rope_type",
              "rope scaling '\(t)' is not supported (supported: default)")
          }
        }
      }
      f.localRopeTheta = local
      let scalar = j["query_pre_attn_scalar"]?.doubleValue ?? Double(c.headDim)
      if scalar != Double(c.headDim) { f.attentionScale = 1 / scalar.squareRoot() }
      f.attentionSoftcap = j["attn_logit_softcapping"]?.doubleValue
      if let cap = j["final_logit_softcapping"], cap != .null {
        throw FrontendError(
          file: path, key: "final_logit_softcapping", "final logit soft-capping is not supported")
      }
      if let act = j["hidden_activation"]?.stringValue, act != "gelu_pytorch_tanh" {
        throw FrontendError(
          file: path, key: "hidden_activation",
          "activation '\(act)' is not supported (supported: gelu_pytorch_tanh)")
      }
    case "phi3":
      f.fusedProjections = true
      let factor =
        j["rope_parameters"]?["partial_rotary_factor"]?.doubleValue ?? j["partial_rotary_factor"]?
        .doubleValue ?? 1
      let r = Int((Double(c.headDim) * factor).rounded(.down))
      guard r > 0, r % 2 == 0, r <= c.headDim else {
        throw FrontendError(
          file: path, key: "partial_rotary_factor",
          "\(factor) gives \(r) rotary dimensions of \(c.headDim) (must be even and positive)")
      }
      if r < c.headDim { f.rotaryDim = r }
    default: break
    }
    return f
  }
}
