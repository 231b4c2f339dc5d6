/// The geometry of a generated Llama-family Hugging Face checkpoint (`HFCheckpointGenerator`).
///
/// Why: out-of-core work is judged on models far larger than the shared 135M one, and a real
/// 8B checkpoint is neither in ../shared nor downloadable here. These shapes give the same
/// tensor names, widths, dtypes and shard layout as the Hub's, with random weights.
public struct CheckpointShape: Sendable, Equatable {
  public var name: String
  public var hidden: Int
  public var intermediate: Int
  public var layers: Int
  public var heads: Int
  public var kvHeads: Int
  public var vocab: Int
  public var ropeTheta: Double
  public var tieEmbeddings: Bool
  /// Shards hold at most this many bytes of tensor data (the Hub writes 5 GB shards).
  public var maxShardBytes: Int

  public init(
    name: String, hidden: Int, intermediate: Int, layers: Int, heads: Int, kvHeads: Int,
    vocab: Int, ropeTheta: Double = 500000, tieEmbeddings: Bool = false, maxShardBytes: Int
  ) {
    self.name = name
    self.hidden = hidden
    self.intermediate = intermediate
    self.layers = layers
    self.heads = heads
    self.kvHeads = kvHeads
    self.vocab = vocab
    self.ropeTheta = ropeTheta
    self.tieEmbeddings = tieEmbeddings
    self.maxShardBytes = maxShardBytes
  }

  /// Llama-3-8B (meta-llama/Meta-Llama-3-8B's config.json): 32 layers, 4096 wide, GQA 32/8,
  /// FFN 14336, vocabulary 128256, untied lm_head, rope θ 500000, ~16 GB of bf16 in 5 GB shards.
  public static let llama8b = CheckpointShape(
    name: "llama-8b", hidden: 4096, intermediate: 14336, layers: 32, heads: 32, kvHeads: 8,
    vocab: 128256, maxShardBytes: 5_000_000_000)

  /// A few MB in several shards, for CI: every code path of the 8B shape at toy widths.
  public static let tinySharded = CheckpointShape(
    name: "tiny-sharded", hidden: 128, intermediate: 384, layers: 4, heads: 4, kvHeads: 2,
    vocab: 1024, maxShardBytes: 1_000_000)

  public static let all = [llama8b, tinySharded]

  public var headDim: Int { hidden / heads }

  /// Every tensor in Hub order (embedding, then each layer, then norm and lm_head) with its
  /// shape and the spread of its random values.
  public var tensors: [(name: String, shape: [Int], kind: TensorKind)] {
    let d = hidden, kv = kvHeads * headDim
    var out: [(String, [Int], TensorKind)] = [
      ("model.embed_tokens.weight", [vocab, d], .embedding)
    ]
    for l in 0..<layers {
      let p = "model.layers.\(l)."
      out += [
        (p + "input_layernorm.weight", [d], .norm),
        (p + "mlp.down_proj.weight", [d, intermediate], .linear),
        (p + "mlp.gate_proj.weight", [intermediate, d], .linear),
        (p + "mlp.up_proj.weight", [intermediate, d], .linear),
        (p + "post_attention_layernorm.weight", [d], .norm),
        (p + "self_attn.k_proj.weight", [kv, d], .linear),
        (p + "self_attn.o_proj.weight", [d, d], .linear),
        (p + "self_attn.q_proj.weight", [d, d], .linear),
        (p + "self_attn.v_proj.weight", [kv, d], .linear),
      ]
    }
    out.append(("model.norm.weight", [d], .norm))
    if !tieEmbeddings { out.append(("lm_head.weight", [vocab, d], .linear)) }
    return out
  }

  /// What a tensor's random values look like.
  public enum TensorKind: Sendable {
    /// Uniform with standard deviation 1/√columns (the fan-in scale of trained linears).
    case linear
    /// Uniform with standard deviation 0.02 (Llama's initializer range).
    case embedding
    /// 1 ± 0.05 uniform: RMSNorm gains near one.
    case norm
  }

  /// The config.json transformers writes for this shape.
  public var configJSON: String {
    """
    {
      "architectures": ["LlamaForCausalLM"],
      "attention_bias": false,
      "bos_token_id": 1,
      "eos_token_id": 2,
      "head_dim": \(headDim),
      "hidden_act": "silu",
      "hidden_size": \(hidden),
      "intermediate_size": \(intermediate),
      "max_position_embeddings": 8192,
      "mlp_bias": false,
      "model_type": "llama",
      "num_attention_heads": \(heads),
      "num_hidden_layers": \(layers),
      "num_key_value_heads": \(kvHeads),
      "rms_norm_eps": 1e-05,
      "rope_theta": \(ropeTheta),
      "tie_word_embeddings": \(tieEmbeddings),
      "torch_dtype": "bfloat16",
      "vocab_size": \(vocab)
    }

    """
  }
}
