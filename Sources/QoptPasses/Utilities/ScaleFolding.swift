import QoptIR

/// A value read only by linears, and the op before it into which a per-channel scale of that
/// value can be folded without changing the float model: the linears get `W[:, j] · s_j`, the
/// producer is changed to produce `x_j / s_j`. AWQ and SmoothQuant move scales this way.
///
/// Producers are recognised by dataflow, never by names:
///
///     %x = rms_norm %h, %γ                → γ_j / s_j  (with `weight_offset` o, the norm
///                                           multiplies by o + γ: γ_j ← (o + γ_j) / s_j − o)
///     %u = linear %a, %W_up  %x = mul %g, %u  → W_up[j, :] / s_j   (the up projection before down)
///     %x = attention %q, %k, %v with %v = linear %a, %W_v, as wide as %x (no grouped KV heads)
///                                         → W_v[j, :] / s_j
///     %x = linear %a, %W                  → W[j, :] / s_j
///
/// Every user of `x` must be a linear of the site (a residual add reading `x` would change), and
/// the producer's weight (and the intermediate values) must have no other reader.
struct FoldSite {
  enum Kind: String, Sendable {
    case norm, mulLinear = "mul-linear", attentionValue = "attention-value", linear
  }

  let function: Function
  let input: Value
  /// The linear ops reading `input`, in op order.
  let linears: [Op]
  let kind: Kind
  /// The producer's weight param (γ or W_prev) and the bias param of a producing linear.
  let producerParam: Op
  let producerBias: Op?
  /// The norm's `weight_offset` (Gemma's `(1 + w)` norms), 0 for every other producer.
  var producerOffset: Float = 0

  var weightNames: [String] { linears.compactMap { $0.operands[1].definingOp?.paramName } }
  var producerName: String { producerParam.paramName ?? "" }

  /// The fold sites of `f` whose producer kind is in `kinds`, in op order.
  static func all(in f: Function, module: Module, kinds: Set<Kind>) -> [FoldSite] {
    var readers: [String: Int] = [:]
    for op in module.allOps { if let n = op.paramName { readers[n, default: 0] += 1 } }
    func uses(_ v: Value) -> Int {
      f.body.reduce(0) { n, op in n + op.operands.filter { $0 === v }.count }
    }
    /// A param read by one param op whose value has one use, holding a dense weight.
    func soleDenseParam(_ v: Value?) -> Op? {
      guard let v, let p = v.definingOp, let n = p.paramName, readers[n] == 1, uses(v) == 1,
        module.weights.dense(n) != nil
      else { return nil }
      return p
    }
    var byInput: [(Value, [Op])] = []
    for op in f.body where op.kind == .linear {
      if let i = byInput.firstIndex(where: { $0.0 === op.operands[0] }) {
        byInput[i].1.append(op)
      } else {
        byInput.append((op.operands[0], [op]))
      }
    }
    var out: [FoldSite] = []
    for (x, linears) in byInput {
      guard uses(x) == linears.count, linears.allSatisfy({ soleDenseParam($0.operands[1]) != nil }),
        let producer = x.definingOp
      else { continue }
      let width = x.type.shape.last.flatMap { $0 }
      /// A linear whose output (read once) is `v`, with its weight rows as wide as `x`.
      func producingLinear(_ v: Value) -> (Op, Op?)? {
        guard uses(v) == 1, let l = v.definingOp, l.kind == .linear,
          let w = soleDenseParam(l.operands[1]),
          module.weights.dense(w.paramName ?? "")?.shape.first == width
        else { return nil }
        let bias = l.operands.count > 2 ? soleDenseParam(l.operands[2]) : nil
        if l.operands.count > 2 && bias == nil { return nil }
        return (w, bias)
      }
      switch producer.kind {
      case .rmsNorm where kinds.contains(.norm):
        // One γ per channel of x (a per-head q/k norm's shorter γ cannot take a per-channel s).
        if let g = soleDenseParam(producer.operands[1]),
          module.weights.dense(g.paramName ?? "")?.count == width
        {
          out.append(
            FoldSite(
              function: f, input: x, linears: linears, kind: .norm, producerParam: g,
              producerBias: nil,
              producerOffset: Float(producer.attributes["weight_offset"]?.doubleValue ?? 0)))
        }
      case .mul where kinds.contains(.mulLinear):
        if let (w, b) = producer.operands.lazy.compactMap(producingLinear).first {
          out.append(
            FoldSite(
              function: f, input: x, linears: linears, kind: .mulLinear, producerParam: w,
              producerBias: b))
        }
      case .attention where kinds.contains(.attentionValue):
        if producer.operands.count > 2, let (w, b) = producingLinear(producer.operands[2]) {
          out.append(
            FoldSite(
              function: f, input: x, linears: linears, kind: .attentionValue, producerParam: w,
              producerBias: b))
        }
      case .linear where kinds.contains(.linear):
        if let (w, b) = producingLinear(x) {
          out.append(
            FoldSite(
              function: f, input: x, linears: linears, kind: .linear, producerParam: w,
              producerBias: b))
        }
      default: continue
      }
    }
    return out
  }

  /// Moves `s` (one factor per channel of `input`) from the producer into the linears.
  func fold(_ s: [Float], module: Module, context: PassContext) {
    for l in linears {
      guard let p = l.operands[1].definingOp, let n = p.paramName, let t = module.weights.dense(n)
      else { continue }
      var w = t.floats()
      let cols = t.shape[1]
      for i in 0..<w.count { w[i] *= s[i % cols] }
      setDense(n, w, shape: t.shape, param: p, context: context)
    }
    for p in [producerParam] + (producerBias.map { [$0] } ?? []) {
      guard let n = p.paramName, let t = module.weights.dense(n) else { continue }
      var w = t.floats()
      // γ and a bias have one value per channel; a producing linear's rows are the channels.
      let perChannel = w.count / s.count
      let o = p === producerParam ? producerOffset : 0
      for i in 0..<w.count { w[i] = (o + w[i]) / s[i / perChannel] - o }
      setDense(n, w, shape: t.shape, param: p, context: context)
    }
  }

  private func setDense(
    _ name: String, _ values: [Float], shape: [Int], param: Op, context: PassContext
  ) {
    context.setWeight(name, .dense(TensorData(floats: values, shape: shape)))
    if let r = param.result, r.type.element != .plain(.f32) {
      context.retype(r, to: r.type.with(element: .plain(.f32)))
    }
  }
}
