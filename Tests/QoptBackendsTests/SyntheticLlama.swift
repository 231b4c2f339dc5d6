import QoptIR
import QoptPasses
import QoptTestSupport

/// A tiny llama module built in memory: HF names, config attributes, a `@main` whose ops mark
/// which weights are Linear and which is the embedding (shapes multiple of 32 so every GGUF
/// block type applies).
enum SyntheticLlama {
  static let hidden = 64, heads = 4, kvHeads = 2, ffn = 128, vocab = 256, layers = 2

  /// Deterministic pseudo-random weights in about [-1, 1].
  static func values(_ n: Int, seed: UInt64) -> [Float] {
    var s = seed &* 6364136223846793005 &+ 1442695040888963407
    return (0..<n).map { _ in
      s = s &* 6364136223846793005 &+ 1442695040888963407
      return Float(Int64(bitPattern: s >> 11) % 2_000_001 - 1_000_000) / 1_000_000
    }
  }

  static func linearNames() -> [(String, [Int])] {
    var out: [(String, [Int])] = []
    let hd = hidden / heads
    for l in 0..<layers {
      let p = "model.layers.\(l)."
      out += [
        (p + "self_attn.q_proj.weight", [heads * hd, hidden]),
        (p + "self_attn.k_proj.weight", [kvHeads * hd, hidden]),
        (p + "self_attn.v_proj.weight", [kvHeads * hd, hidden]),
        (p + "self_attn.o_proj.weight", [hidden, heads * hd]),
        (p + "mlp.gate_proj.weight", [ffn, hidden]),
        (p + "mlp.up_proj.weight", [ffn, hidden]),
        (p + "mlp.down_proj.weight", [hidden, ffn]),
      ]
    }
    return out
  }

  /// The module; `dtype` is the dtype of the float weights, `tied` drops `lm_head.weight`.
  static func make(dtype: DType = .f32, tied: Bool = false) -> Module {
    let m = Module(name: "tiny")
    m.attributes["hidden_size"] = .int(hidden)
    m.attributes["num_attention_heads"] = .int(heads)
    m.attributes["num_key_value_heads"] = .int(kvHeads)
    m.attributes["intermediate_size"] = .int(ffn)
    m.attributes["vocab_size"] = .int(vocab)
    m.attributes["num_hidden_layers"] = .int(layers)
    m.attributes["max_position_embeddings"] = .int(2048)
    m.attributes["rms_norm_eps"] = .float(1e-5)
    m.attributes["rope_theta"] = .float(10000)
    m.attributes["model_type"] = .string("llama")
    m.attributes["architectures"] = .array([.string("LlamaForCausalLM")])
    m.attributes["tie_word_embeddings"] = .bool(tied)
    var seed: UInt64 = 1
    func add(_ name: String, _ shape: [Int], ones: Bool = false) {
      seed += 1
      let n = shape.reduce(1, *)
      let v = ones ? values(n, seed: seed).map { 1 + $0 / 4 } : values(n, seed: seed)
      m.weights.set(name, .dense(TensorData(floats: v, shape: shape, as: dtype)))
    }
    add("model.embed_tokens.weight", [vocab, hidden])
    for l in 0..<layers {
      add("model.layers.\(l).input_layernorm.weight", [hidden], ones: true)
      add("model.layers.\(l).post_attention_layernorm.weight", [hidden], ones: true)
    }
    for (n, s) in linearNames() { add(n, s) }
    add("model.norm.weight", [hidden], ones: true)
    if !tied { add("lm_head.weight", [vocab, hidden]) }

    // Ops that say which weight is what (not a complete forward).
    let f = Function(name: "main", arguments: [Value(name: "ids", type: TensorType([nil], .i32))], resultType: TensorType([nil, hidden], dtype))
    m.append(f)
    var b = Builder(atEndOf: f)
    let table = b.param("model.embed_tokens.weight", TensorType([vocab, hidden], dtype))
    var x = b.op(.embedding, [f.arguments[0], table], TensorType([nil, hidden], dtype))
    for (n, s) in linearNames() {
      let w = b.param(n, TensorType(s.map { $0 }, dtype))
      x = b.op(.linear, [x, w], TensorType([nil, s[0]], dtype))
    }
    let head = b.param(tied ? "model.embed_tokens.weight" : "lm_head.weight", TensorType([vocab, hidden], dtype))
    x = b.op(.linear, [x, head], TensorType([nil, vocab], dtype))
    b.ret(x)
    return m
  }

  /// Quantizes every Linear weight except lm_head with `IntQuantizer`.
  static func quantizeLinears(_ m: Module, scheme: IntScheme, rule: ScaleRule) {
    for (n, s) in linearNames() {
      // safe: make() stored every linear as dense.
      let w = m.weights.dense(n)!.floats()
      let q = w.withUnsafeBufferPointer { IntQuantizer(scheme: scheme, rule: rule).quantize($0, rows: s[0], cols: s[1]) }
      m.weights.set(n, .quantized(q))
    }
  }
}

/// A fresh empty temporary directory for one test (under $TMPDIR; the test removes it).
func makeTemporaryDirectory(_ tag: String) -> String {
  TestTemporary.makeDirectory("backends-tests-\(tag)")
}
