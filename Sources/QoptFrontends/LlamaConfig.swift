import QoptFormats
import QoptIR

/// The configuration of a Llama-family decoder (llama, mistral, qwen2), as Hugging Face's
/// config.json names it. Both frontends fill one; `LlamaLowering` turns it into the IR and
/// into the module attributes a backend rebuilds config.json from.
public struct LlamaConfig: Hashable, Sendable {
  /// `rope_scaling` of type `llama3` (llama-forward.md §4).
  public struct Llama3Scaling: Hashable, Sendable {
    public var factor: Double
    public var lowFreqFactor: Double
    public var highFreqFactor: Double
    public var originalMaxPositionEmbeddings: Int
  }

  public static let supportedModelTypes = ["llama", "mistral", "qwen2"]

  public var modelType: String
  public var hiddenSize: Int
  public var intermediateSize: Int
  public var numHiddenLayers: Int
  public var numAttentionHeads: Int
  public var numKeyValueHeads: Int
  public var headDim: Int
  public var rmsNormEps: Double
  public var ropeTheta: Double
  public var vocabSize: Int
  public var maxPositionEmbeddings: Int
  public var tieWordEmbeddings: Bool
  public var ropeScaling: Llama3Scaling?
  public var bosTokenId: Int?
  public var eosTokenId: Int?
  /// The features of families beyond Llama (qwen3, qwen3_moe, mixtral, gemma3_text, phi3);
  /// empty for llama, mistral and qwen2.
  public var family = DecoderFamily()

  /// The module attributes: every field under its config.json name, plus `arch`.
  public var attributes: AttributeDict {
    var a = AttributeDict()
    a["arch"] = .string("llama")
    a["model_type"] = .string(modelType)
    a["hidden_size"] = .int(hiddenSize)
    a["intermediate_size"] = .int(intermediateSize)
    a["num_hidden_layers"] = .int(numHiddenLayers)
    a["num_attention_heads"] = .int(numAttentionHeads)
    a["num_key_value_heads"] = .int(numKeyValueHeads)
    a["head_dim"] = .int(headDim)
    a["rms_norm_eps"] = .float(rmsNormEps)
    a["rope_theta"] = .float(ropeTheta)
    a["vocab_size"] = .int(vocabSize)
    a["max_position_embeddings"] = .int(maxPositionEmbeddings)
    a["tie_word_embeddings"] = .bool(tieWordEmbeddings)
    if let b = bosTokenId { a["bos_token_id"] = .int(b) }
    if let e = eosTokenId { a["eos_token_id"] = .int(e) }
    if let s = ropeScaling {
      a["rope_scaling"] = .array([
        .string("llama3"), .float(s.factor), .float(s.lowFreqFactor), .float(s.highFreqFactor),
        .int(s.originalMaxPositionEmbeddings),
      ])
    }
    for (k, v) in family.attributes { a[k] = v }
    return a
  }

  /// The attributes of every `rope` op.
  var ropeAttributes: [String: Attribute] {
    var a: [String: Attribute] = ["head_dim": .int(headDim), "theta": .float(ropeTheta)]
    if let s = ropeScaling {
      a["rope_type"] = .string("llama3")
      a["factor"] = .float(s.factor)
      a["low_freq_factor"] = .float(s.lowFreqFactor)
      a["high_freq_factor"] = .float(s.highFreqFactor)
      a["original_max_position_embeddings"] = .int(s.originalMaxPositionEmbeddings)
    }
    return a
  }

  /// Rebuilds the config from module attributes (what a backend writing config.json needs).
  public init?(attributes a: AttributeDict) {
    guard let mt = a["model_type"]?.stringValue, let hs = a["hidden_size"]?.intValue,
      let isz = a["intermediate_size"]?.intValue, let l = a["num_hidden_layers"]?.intValue,
      let h = a["num_attention_heads"]?.intValue, let kv = a["num_key_value_heads"]?.intValue,
      let hd = a["head_dim"]?.intValue, let eps = a["rms_norm_eps"]?.doubleValue,
      let th = a["rope_theta"]?.doubleValue, let v = a["vocab_size"]?.intValue,
      let mp = a["max_position_embeddings"]?.intValue, let tie = a["tie_word_embeddings"]?.boolValue
    else { return nil }
    self.init(
      modelType: mt, hiddenSize: hs, intermediateSize: isz, numHiddenLayers: l,
      numAttentionHeads: h,
      numKeyValueHeads: kv, headDim: hd, rmsNormEps: eps, ropeTheta: th, vocabSize: v,
      maxPositionEmbeddings: mp, tieWordEmbeddings: tie)
    bosTokenId = a["bos_token_id"]?.intValue
    eosTokenId = a["eos_token_id"]?.intValue
    if let s = a["rope_scaling"]?.arrayValue, s.count == 5, let f = s[1].doubleValue,
      let lo = s[2].doubleValue, let hi = s[3].doubleValue, let o = s[4].intValue
    {
      ropeScaling = Llama3Scaling(
        factor: f, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositionEmbeddings: o)
    }
  }

  public init(
    modelType: String, hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int,
    numAttentionHeads: Int, numKeyValueHeads: Int, headDim: Int, rmsNormEps: Double,
    ropeTheta: Double, vocabSize: Int, maxPositionEmbeddings: Int, tieWordEmbeddings: Bool,
    ropeScaling: Llama3Scaling? = nil
  ) {
    self.modelType = modelType
    self.hiddenSize = hiddenSize
    self.intermediateSize = intermediateSize
    self.numHiddenLayers = numHiddenLayers
    self.numAttentionHeads = numAttentionHeads
    self.numKeyValueHeads = numKeyValueHeads
    self.headDim = headDim
    self.rmsNormEps = rmsNormEps
    self.ropeTheta = ropeTheta
    self.vocabSize = vocabSize
    self.maxPositionEmbeddings = maxPositionEmbeddings
    self.tieWordEmbeddings = tieWordEmbeddings
    self.ropeScaling = ropeScaling
  }

  /// A config.json text for this configuration (LlamaForCausalLM-style keys).
  public var configJSON: String {
    var pairs: [(String, JSON)] = [
      ("architectures", .array([.string(architectureName)])),
      ("model_type", .string(modelType)),
      ("hidden_size", .int(hiddenSize)),
      ("intermediate_size", .int(intermediateSize)),
      ("num_hidden_layers", .int(numHiddenLayers)),
      ("num_attention_heads", .int(numAttentionHeads)),
      ("num_key_value_heads", .int(numKeyValueHeads)),
      ("head_dim", .int(headDim)),
      ("hidden_act", .string("silu")),
      ("rms_norm_eps", .double(rmsNormEps)),
      ("rope_theta", .double(ropeTheta)),
      ("vocab_size", .int(vocabSize)),
      ("max_position_embeddings", .int(maxPositionEmbeddings)),
      ("tie_word_embeddings", .bool(tieWordEmbeddings)),
      ("torch_dtype", .string("float32")),
    ]
    if let b = bosTokenId { pairs.append(("bos_token_id", .int(b))) }
    if let e = eosTokenId { pairs.append(("eos_token_id", .int(e))) }
    if let s = ropeScaling {
      pairs.append(
        (
          "rope_scaling",
          .object([
            ("rope_type", .string("llama3")), ("factor", .double(s.factor)),
            ("low_freq_factor", .double(s.lowFreqFactor)),
            ("high_freq_factor", .double(s.highFreqFactor)),
            ("original_max_position_embeddings", .int(s.originalMaxPositionEmbeddings)),
          ])
        ))
    }
    return JSON.object(pairs).pretty + "\n"
  }

  var architectureName: String {
    switch modelType {
    case "mistral": "MistralForCausalLM"
    case "qwen2": "Qwen2ForCausalLM"
    default: "LlamaForCausalLM"
    }
  }
}

extension LlamaConfig {
  /// The largest value each size may take (by its config.json name). Real checkpoints stay far
  /// below (Llama 3 405B: hidden 16384, 126 layers, vocab 128256); the bounds make every
  /// product the lowering and the runtime form (`heads × head_dim`, `vocab × hidden`, …) fit
  /// in an Int, so a hostile config is an error here instead of an overflow trap later.
  var sizes: [(key: String, value: Int, max: Int)] {
    [
      ("hidden_size", hiddenSize, 1 << 20), ("intermediate_size", intermediateSize, 1 << 22),
      ("num_hidden_layers", numHiddenLayers, 1 << 14),
      ("num_attention_heads", numAttentionHeads, 1 << 14),
      ("num_key_value_heads", numKeyValueHeads, 1 << 14), ("head_dim", headDim, 1 << 14),
      ("vocab_size", vocabSize, 1 << 24),
      ("max_position_embeddings", maxPositionEmbeddings, 1 << 40),
    ]
  }

  /// The first size that is not in `1...limit`, as (config.json key, message), or nil.
  public var sizeProblem: (key: String, message: String)? {
    for (key, v, limit) in sizes {
      guard v >= 1 && v <= limit else { return (key, "\(v) is out of range (1...\(limit))") }
    }
    return nil
  }
}
