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
    for (attribute, file) in servingFiles where store.contains(file) {
      module.attributes[attribute] = .symbol(file)
    }
    let D = c.hiddenSize
    let act = TensorType([nil, D], .f32)

    func param(
      _ b: inout Builder, _ name: String, _ hint: String, expect: [Int]
    ) throws(FrontendError) -> Value {
      guard let e = store[name] else {
        throw FrontendError(file: file, key: name, "missing tensor")
      }
      guard e.shape == expect else {
        throw FrontendError(
          file: file, key: name, "tensor has shape \(e.shape), the config implies \(expect)")
      }
      var attrs: [String: Attribute] = ["name": .symbol(name)]
      switch e {
      case .dense(let t):
        attrs["source_type"] = .string(sourceTypes[name] ?? t.dtype.rawValue)
        return b.op(.param, [], TensorType(expect.map { $0 }, t.dtype), named: hint, attrs)
      case .quantized(let q):
        // An already-quantized checkpoint (compressed-tensors): the weight keeps its scheme.
        attrs["source_type"] = .string(sourceTypes[name] ?? "quantized")
        return b.op(
          .param, [], TensorType(expect.map { $0 }, .quantized(q.scheme)), named: hint, attrs)
      }
    }
    func linear(
      _ b: inout Builder, _ x: Value, _ w: String, out: Int, in inF: Int, _ hint: String
    ) throws(FrontendError) -> Value {
      let wv = try param(&b, w + ".weight", "w" + hint, expect: [out, inF])
      var ops = [x, wv]
      if store.contains(w + ".bias") {
        ops.append(try param(&b, w + ".bias", "b" + hint, expect: [out]))
      }
      return b.op(.linear, ops, TensorType([nil, out], .f32), named: hint)
    }

    let H = c.numAttentionHeads, KV = c.numKeyValueHeads, d = c.headDim, F = c.intermediateSize
    let fam = c.family
    let normAttrs: [String: Attribute] =
      fam.normWeightOffset == 0
      ? ["eps": .float(c.rmsNormEps)]
      : ["eps": .float(c.rmsNormEps), "weight_offset": .float(fam.normWeightOffset)]
    /// `rms_norm` of `x` by the checkpoint weight `name` (length `n`).
    func norm(
      _ b: inout Builder, _ x: Value, _ name: String, _ n: Int, _ hint: String, weight: String
    ) throws(FrontendError) -> Value {
      let w = try param(&b, name, weight, expect: [n])
      return b.op(.rmsNorm, [x, w], x.type, named: hint, normAttrs)
    }
    /// The gated MLP on `h`: `down(act(gate(h)) · up(h))`, `prefix` naming its projections.
    func mlp(
      _ b: inout Builder, _ h: Value, _ prefix: String, inter: Int, names: (String, String, String),
      _ tag: String
    ) throws(FrontendError) -> Value {
      let g: Value, u: Value
      if fam.fusedProjections {
        // Phi-3's gate_up_proj stays one weight; its rows are [gate; up] (`out_split`).
        let gu = try linear(&b, h, prefix + "gate_up_proj", out: 2 * inter, in: D, "gate_up" + tag)
        gu.definingOp?.attributes["out_split"] = .array([.int(inter), .int(inter)])
        g = b.op(
          .slice, [gu], TensorType([nil, inter], .f32), named: "gate" + tag,
          ["start": .int(0), "size": .int(inter)])
        u = b.op(
          .slice, [gu], TensorType([nil, inter], .f32), named: "up" + tag,
          ["start": .int(inter), "size": .int(inter)])
      } else {
        g = try linear(&b, h, prefix + names.0, out: inter, in: D, "gate" + tag)
        u = try linear(&b, h, prefix + names.1, out: inter, in: D, "up" + tag)
      }
      let s = b.op(fam.geluTanh ? .geluTanh : .silu, [g], g.type, named: "act" + tag)
      let m = b.op(.mul, [s, u], g.type, named: "mlp" + tag)
      return try linear(&b, m, prefix + names.2, out: D, in: inter, "down" + tag)
    }

    /// The MoE MLP: router linear, `moe_route`, one dispatch + gated MLP per expert, combine.
    func experts(
      _ b: inout Builder, _ h: Value, _ p: String, _ moe: DecoderFamily.MoE
    ) throws(FrontendError) -> Value {
      let prefix = p + (moe.mixtralNames ? "block_sparse_moe." : "mlp.")
      let E = moe.experts
      let logits = try linear(&b, h, prefix + "gate", out: E, in: D, "router")
      let route = b.op(
        .moeRoute, [logits], logits.type, named: "route",
        ["top_k": .int(moe.topK), "normalize": .bool(moe.normalize)])
      let names = moe.mixtralNames ? ("w1", "w3", "w2") : ("gate_proj", "up_proj", "down_proj")
      var outs: [Value] = []
      for e in 0..<E {
        let xe = b.op(.moeDispatch, [h, route], act, named: "x_e\(e)", ["expert": .int(e)])
        outs.append(
          try mlp(
            &b, xe, prefix + "experts.\(e).", inter: moe.intermediateSize, names: names, "_e\(e)"))
      }
      return b.op(.moeCombine, [route] + outs, act, named: "moe")
    }

    for i in 0..<c.numHiddenLayers {
      let p = "model.layers.\(i)."
      let f = Function(
        name: "block.\(i)", arguments: [Value(name: "x", type: act)], resultType: act)
      var b = Builder(atEndOf: f)
      let x = f.arguments[0]
      let h = try norm(&b, x, p + "input_layernorm.weight", D, "h", weight: "w_in")
      var q: Value, k: Value, v: Value
      if fam.fusedProjections {
        // Phi-3's qkv_proj stays one weight; its rows are [q; k; v] (`out_split`).
        let qkv = try linear(&b, h, p + "self_attn.qkv_proj", out: (H + 2 * KV) * d, in: D, "qkv")
        qkv.definingOp?.attributes["out_split"] = .array([.int(H * d), .int(KV * d), .int(KV * d)])
        q = b.op(
          .slice, [qkv], TensorType([nil, H * d], .f32), named: "q",
          ["start": .int(0), "size": .int(H * d)])
        k = b.op(
          .slice, [qkv], TensorType([nil, KV * d], .f32), named: "k",
          ["start": .int(H * d), "size": .int(KV * d)])
        v = b.op(
          .slice, [qkv], TensorType([nil, KV * d], .f32), named: "v",
          ["start": .int((H + KV) * d), "size": .int(KV * d)])
      } else {
        q = try linear(&b, h, p + "self_attn.q_proj", out: H * d, in: D, "q")
        k = try linear(&b, h, p + "self_attn.k_proj", out: KV * d, in: D, "k")
        v = try linear(&b, h, p + "self_attn.v_proj", out: KV * d, in: D, "v")
      }
      if fam.qkNorm {
        // One RMSNorm per head: the weight has head_dim elements.
        q = try norm(&b, q, p + "self_attn.q_norm.weight", d, "q_norm", weight: "w_q_norm")
        k = try norm(&b, k, p + "self_attn.k_norm.weight", d, "k_norm", weight: "w_k_norm")
      }
      let sliding = fam.slidingLayers.contains(i)
      var ropeAttrs = c.ropeAttributes
      if sliding, let t = fam.localRopeTheta { ropeAttrs["theta"] = .float(t) }
      if let r = fam.rotaryDim { ropeAttrs["rotary_dim"] = .int(r) }
      let qr = b.op(.rope, [q], q.type, named: "q_rot", ropeAttrs)
      let kr = b.op(.rope, [k], k.type, named: "k_rot", ropeAttrs)
      var attnAttrs: [String: Attribute] = [
        "heads": .int(H), "kv_heads": .int(KV), "head_dim": .int(d),
      ]
      if sliding, let w = fam.slidingWindow { attnAttrs["sliding_window"] = .int(w) }
      if let sc = fam.attentionScale { attnAttrs["scale"] = .float(sc) }
      if let cap = fam.attentionSoftcap { attnAttrs["softcap"] = .float(cap) }
      let a = b.op(.attention, [qr, kr, v], q.type, named: "attn", attnAttrs)
      var o = try linear(&b, a, p + "self_attn.o_proj", out: D, in: H * d, "o")
      if fam.sandwichNorms {
        o = try norm(&b, o, p + "post_attention_layernorm.weight", D, "o_norm", weight: "w_o_norm")
      }
      let x1 = b.op(.add, [x, o], act, named: "x1")
      let h2 =
        fam.sandwichNorms
        ? try norm(&b, x1, p + "pre_feedforward_layernorm.weight", D, "h2", weight: "w_post")
        : try norm(&b, x1, p + "post_attention_layernorm.weight", D, "h2", weight: "w_post")
      var dn: Value
      if let moe = fam.moe, !moe.denseLayers.contains(i) {
        dn = try experts(&b, h2, p, moe)
      } else {
        dn = try mlp(&b, h2, p + "mlp.", inter: F, names: ("gate_proj", "up_proj", "down_proj"), "")
      }
      if fam.sandwichNorms {
        dn = try norm(
          &b, dn, p + "post_feedforward_layernorm.weight", D, "down_norm", weight: "w_down_norm")
      }
      let y = b.op(.add, [x1, dn], act, named: "y")
      b.ret(y)
      module.append(f)
    }

    let V = c.vocabSize
    let logitsType = TensorType([nil, V], .f32)
    let main = Function(
      name: "main", arguments: [Value(name: "ids", type: TensorType([nil], .i32))],
      resultType: logitsType)
    var b = Builder(atEndOf: main)
    let emb = try param(&b, "model.embed_tokens.weight", "embed", expect: [V, D])
    var x = b.op(.embedding, [main.arguments[0], emb], act, named: "x")
    if let scale = c.family.embeddingScale {
      // Gemma scales in the embedding's dtype (transformers: `embed_scale.to(weight.dtype)`).
      let dtype = DType(rawValue: sourceTypes["model.embed_tokens.weight"] ?? "f32") ?? .f32
      let factor = Double(roundFloat(Float(scale), to: dtype.isFloat ? dtype : .f32))
      x = b.op(.scale, [x], act, named: "x_scaled", ["factor": .float(factor)])
    }
    for i in 0..<c.numHiddenLayers {
      x = b.create(
        OpKind.call.rawValue, [x], result: act, named: "x",
        attributes: AttributeDict(["callee": .symbol("block.\(i)")])
      ).result!  // safe: created with a result type
    }
    let wn = try param(&b, "model.norm.weight", "w_norm", expect: [D])
    let hn = b.op(.rmsNorm, [x, wn], act, named: "h", normAttrs)
    let lm = c.tieWordEmbeddings ? emb : try param(&b, "lm_head.weight", "lm_head", expect: [V, D])
    let logits = b.op(.linear, [hn, lm], logitsType, named: "logits")
    b.ret(logits)
    module.append(main)
    return module
  }
}
