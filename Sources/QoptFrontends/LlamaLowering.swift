import QoptFormats
import QoptIR

/// Lowers a Llama-family configuration plus its weights (HF names, already in `store`) to the
/// IR: one function per decoder block and `@main`.
///
///     func @block.N(%x: tensor<?xDxf32>) -> tensor<?xDxf32>     // pre-norm attention + MLP
///     func @main(%ids: tensor<?xi32>) -> tensor<?xVxf32>        // embedding, calls, norm, lm_head
///
/// A linear gets its bias operand when the store holds `<proj>.bias` (qwen2's q/k/v, llama's
/// `attention_bias`). Tied models use the embedding table as the lm_head weight. Every param
/// carries `source_type` (the checkpoint's storage type: `f32`, `bf16`, `q4_1`, …).
enum LlamaLowering {
  /// The weight-store name of the tokenizer (tokenizer.json bytes as a `u8` tensor); the module
  /// attribute `tokenizer` refers to it so that saving keeps it in the sidecar.
  static let tokenizerWeight = "tokenizer.json"
  static let tokenizerConfigFile = "tokenizer_config.json"
  static let generationConfigFile = "generation_config.json"
  /// The serving files a checkpoint directory carries beside tokenizer.json (special tokens,
  /// chat template, generation defaults), each named by a module attribute so a saved `.ir`
  /// keeps it and every directory backend writes it back.
  static let servingFiles: [(attribute: String, file: String)] = [
    ("tokenizer_config", tokenizerConfigFile), ("generation_config", generationConfigFile),
    ("special_tokens_map", "special_tokens_map.json"), ("chat_template", "chat_template.jinja"),
  ]

  static func lower(
    _ c: LlamaConfig, store: WeightStore, sourceTypes: [String: String], file: String
  ) throws(FrontendError) -> Module {
    let module = Module(attributes: c.attributes, weights: store)
    if store.contains(tokenizerWeight) { module.attributes["tokenizer"] = .symbol(tokenizerWeight) }
    for (attribute, file) in servingFiles where store.contains(file) { module.attributes[attribute] = .symbol(file) }
    let D = c.hiddenSize
    let act = TensorType([nil, D], .f32)

    func param(_ b: inout Builder, _ name: String, _ hint: String, expect: [Int]) throws(FrontendError) -> Value {
      guard let e = store[name] else { throw FrontendError(file: file, key: name, "missing tensor") }
      guard e.shape == expect else {
        throw FrontendError(file: file, key: name, "tensor has shape \(e.shape), the config implies \(expect)")
      }
      var attrs: [String: Attribute] = ["name": .symbol(name)]
      switch e {
      case .dense(let t):
        attrs["source_type"] = .string(sourceTypes[name] ?? t.dtype.rawValue)
        return b.op(.param, [], TensorType(expect.map { $0 }, t.dtype), named: hint, attrs)
      case .quantized(let q):
        // An already-quantized checkpoint (compressed-tensors): the weight keeps its scheme.
        attrs["source_type"] = .string(sourceTypes[name] ?? "quantized")
        return b.op(.param, [], TensorType(expect.map { $0 }, .quantized(q.scheme)), named: hint, attrs)
      }
    }
    func linear(_ b: inout Builder, _ x: Value, _ w: String, out: Int, in inF: Int, _ hint: String) throws(FrontendError) -> Value {
      let wv = try param(&b, w + ".weight", "w" + hint, expect: [out, inF])
      var ops = [x, wv]
      if store.contains(w + ".bias") { ops.append(try param(&b, w + ".bias", "b" + hint, expect: [out])) }
      return b.op(.linear, ops, TensorType([nil, out], .f32), named: hint)
    }

    let H = c.numAttentionHeads, KV = c.numKeyValueHeads, d = c.headDim, F = c.intermediateSize
    for i in 0..<c.numHiddenLayers {
      let p = "model.layers.\(i)."
      let f = Function(name: "block.\(i)", arguments: [Value(name: "x", type: act)], resultType: act)
      var b = Builder(atEndOf: f)
      let x = f.arguments[0]
      let eps: [String: Attribute] = ["eps": .float(c.rmsNormEps)]
      let wIn = try param(&b, p + "input_layernorm.weight", "w_in", expect: [D])
      let h = b.op(.rmsNorm, [x, wIn], act, named: "h", eps)
      let q = try linear(&b, h, p + "self_attn.q_proj", out: H * d, in: D, "q")
      let k = try linear(&b, h, p + "self_attn.k_proj", out: KV * d, in: D, "k")
      let v = try linear(&b, h, p + "self_attn.v_proj", out: KV * d, in: D, "v")
      let qr = b.op(.rope, [q], q.type, named: "q_rot", c.ropeAttributes)
      let kr = b.op(.rope, [k], k.type, named: "k_rot", c.ropeAttributes)
      let a = b.op(.attention, [qr, kr, v], q.type, named: "attn", ["heads": .int(H), "kv_heads": .int(KV), "head_dim": .int(d)])
      let o = try linear(&b, a, p + "self_attn.o_proj", out: D, in: H * d, "o")
      let x1 = b.op(.add, [x, o], act, named: "x1")
      let wPost = try param(&b, p + "post_attention_layernorm.weight", "w_post", expect: [D])
      let h2 = b.op(.rmsNorm, [x1, wPost], act, named: "h2", eps)
      let g = try linear(&b, h2, p + "mlp.gate_proj", out: F, in: D, "gate")
      let u = try linear(&b, h2, p + "mlp.up_proj", out: F, in: D, "up")
      let s = b.op(.silu, [g], g.type, named: "act")
      let m = b.op(.mul, [s, u], g.type, named: "mlp")
      let dn = try linear(&b, m, p + "mlp.down_proj", out: D, in: F, "down")
      let y = b.op(.add, [x1, dn], act, named: "y")
      b.ret(y)
      module.append(f)
    }

    let V = c.vocabSize
    let logitsType = TensorType([nil, V], .f32)
    let main = Function(name: "main", arguments: [Value(name: "ids", type: TensorType([nil], .i32))], resultType: logitsType)
    var b = Builder(atEndOf: main)
    let emb = try param(&b, "model.embed_tokens.weight", "embed", expect: [V, D])
    var x = b.op(.embedding, [main.arguments[0], emb], act, named: "x")
    for i in 0..<c.numHiddenLayers {
      x = b.create(OpKind.call.rawValue, [x], result: act, named: "x", attributes: AttributeDict(["callee": .symbol("block.\(i)")])).result!  // safe: created with a result type
    }
    let wn = try param(&b, "model.norm.weight", "w_norm", expect: [D])
    let hn = b.op(.rmsNorm, [x, wn], act, named: "h", ["eps": .float(c.rmsNormEps)])
    let lm = c.tieWordEmbeddings ? emb : try param(&b, "lm_head.weight", "lm_head", expect: [V, D])
    let logits = b.op(.linear, [hn, lm], logitsType, named: "logits")
    b.ret(logits)
    module.append(main)
    return module
  }
}
