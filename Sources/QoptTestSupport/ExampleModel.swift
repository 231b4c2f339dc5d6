import QoptIR

/// The bundled example: a tiny Llama-shaped model (2 blocks, hidden 64, 4 heads of 16, 2 KV
/// heads, FFN 128, vocab 256, tied embeddings) with deterministic pseudo-random weights, HF
/// weight names and one function per block plus `@main` — the same IR shape the importers emit.
public enum ExampleModel {
  public struct Config: Sendable {
    public var vocab = 256, hidden = 64, heads = 4, kvHeads = 2, headDim = 16, ffn = 128, blocks = 2
    public var eps = 1e-5, theta = 10000.0
    public var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
    public init() {}
  }

  /// Builds the module with its weights in memory.
  public static func make(_ c: Config = Config()) -> Module {
    var rng = SplitMix64(seed: c.seed)
    let m = Module(name: "tiny_llama", attributes: AttributeDict([
      "arch": .string("llama"), "vocab_size": .int(c.vocab), "hidden_size": .int(c.hidden),
      "intermediate_size": .int(c.ffn), "num_hidden_layers": .int(c.blocks),
      "num_attention_heads": .int(c.heads), "num_key_value_heads": .int(c.kvHeads),
      "head_dim": .int(c.headDim), "rms_norm_eps": .float(c.eps), "rope_theta": .float(c.theta),
      "tie_word_embeddings": .bool(true), "max_position_embeddings": .int(2048),
    ]))
    func weight(_ name: String, _ shape: [Int], std: Double, mean: Double = 0) {
      let n = shape.reduce(1, *)
      var v = [Float](repeating: 0, count: n)
      for i in 0..<n { v[i] = Float(mean + std * rng.normal()) }
      m.weights.set(name, .dense(TensorData(floats: v, shape: shape)))
    }
    let d = c.hidden
    let act = TensorType([nil, d], .f32)
    for b in 0..<c.blocks {
      let p = "model.layers.\(b)."
      let f = Function(name: "block.\(b)", arguments: [Value(name: "x", type: act)], resultType: act)
      m.append(f)
      var bl = Builder(atEndOf: f)
      let x = f.arguments[0]
      func lin(_ input: Value, _ name: String, _ out: Int, _ inp: Int, _ hint: String) -> Value {
        weight(p + name + ".weight", [out, inp], std: 1 / Double(inp).squareRoot())
        let w = bl.param(p + name + ".weight", TensorType([out, inp], .f32), named: "w_" + hint)
        return bl.op(.linear, [input, w], TensorType([nil, out], .f32), named: hint)
      }
      weight(p + "input_layernorm.weight", [d], std: 0.1, mean: 1)
      let ln1 = bl.param(p + "input_layernorm.weight", TensorType([d], .f32), named: "w_ln1")
      let h = bl.op(.rmsNorm, [x, ln1], act, named: "h", ["eps": .float(c.eps)])
      let q = lin(h, "self_attn.q_proj", c.heads * c.headDim, d, "q")
      let k = lin(h, "self_attn.k_proj", c.kvHeads * c.headDim, d, "k")
      let v = lin(h, "self_attn.v_proj", c.kvHeads * c.headDim, d, "v")
      let rope: [String: Attribute] = ["head_dim": .int(c.headDim), "theta": .float(c.theta)]
      let qr = bl.op(.rope, [q], q.type, named: "q_rot", rope)
      let kr = bl.op(.rope, [k], k.type, named: "k_rot", rope)
      let a = bl.op(.attention, [qr, kr, v], q.type, named: "attn",
                    ["heads": .int(c.heads), "kv_heads": .int(c.kvHeads), "head_dim": .int(c.headDim)])
      let o = lin(a, "self_attn.o_proj", d, c.heads * c.headDim, "o")
      let x1 = bl.op(.add, [x, o], act, named: "x1")
      weight(p + "post_attention_layernorm.weight", [d], std: 0.1, mean: 1)
      let ln2 = bl.param(p + "post_attention_layernorm.weight", TensorType([d], .f32), named: "w_ln2")
      let h2 = bl.op(.rmsNorm, [x1, ln2], act, named: "h2", ["eps": .float(c.eps)])
      let g = lin(h2, "mlp.gate_proj", c.ffn, d, "gate")
      let u = lin(h2, "mlp.up_proj", c.ffn, d, "up")
      let s = bl.op(.silu, [g], g.type, named: "act")
      let mu = bl.op(.mul, [s, u], g.type, named: "prod")
      let dn = lin(mu, "mlp.down_proj", d, c.ffn, "down")
      let y = bl.op(.add, [x1, dn], act, named: "y")
      bl.ret(y)
    }
    let logitsType = TensorType([nil, c.vocab], .f32)
    let main = Function(name: "main", arguments: [Value(name: "ids", type: TensorType([nil], .i32))], resultType: logitsType)
    m.append(main)
    var bm = Builder(atEndOf: main)
    weight("model.embed_tokens.weight", [c.vocab, d], std: 0.5)
    let emb = bm.param("model.embed_tokens.weight", TensorType([c.vocab, d], .f32), named: "embed")
    var x = bm.op(.embedding, [main.arguments[0], emb], act, named: "x")
    for b in 0..<c.blocks {
      x = bm.op(.call, [x], act, named: "x\(b + 1)", ["callee": .symbol("block.\(b)")])
    }
    weight("model.norm.weight", [d], std: 0.1, mean: 1)
    let n = bm.param("model.norm.weight", TensorType([d], .f32), named: "w_norm")
    let xn = bm.op(.rmsNorm, [x, n], act, named: "xn", ["eps": .float(c.eps)])
    let logits = bm.op(.linear, [xn, emb], logitsType, named: "logits")
    bm.ret(logits)
    return m
  }
}

/// SplitMix64: a tiny, well-mixed deterministic generator (same stream on every platform).
public struct SplitMix64: RandomNumberGenerator, Sendable {
  var state: UInt64
  public init(seed: UInt64) { state = seed }
  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
  /// A uniform double in (0, 1).
  public mutating func uniform() -> Double { (Double(next() >> 11) + 0.5) / Double(1 << 53) }
  /// A standard normal sample (Box–Muller, cosine branch only, for a simple exact stream).
  public mutating func normal() -> Double {
    let u1 = uniform()
    let u2 = uniform()
    return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
  }
}

#if canImport(Glibc)
  import Glibc
#endif
