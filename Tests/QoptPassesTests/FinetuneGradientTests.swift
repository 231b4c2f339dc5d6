import QoptIR
import QoptPasses
import QoptRuntime
import QoptTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

// Gradient checks of `finetune`'s whole-model backward (issue 23): the two-block example model,
// quantized by `rtn`, every parameter kind (scale, zero point, straight-through weight) under
// both losses, analytic gradients (f32, through `WholeModel`) against central finite
// differences of an independent float64 forward of the same model.

private let config = ExampleModel.Config()
private let samples = 2, tokens = 8

/// Token ids of the two windows.
private let ids: [[Int32]] = [
  [1, 17, 42, 99, 3, 250, 7, 64], [200, 5, 5, 128, 31, 77, 12, 9],
]

private func quantized(_ pipeline: String) throws -> Module {
  let m = ExampleModel.make()
  try PassManager(threads: 1) { _ in }.run(
    PipelineParser.parse(pipeline, registry: .builtin()), on: m)
  return m
}

/// The block-0 inputs: embedding rows of `ids`.
private func embedded(_ m: Module) -> [Float] {
  let table = m.weights.dense("model.embed_tokens.weight")!.floats()
  return ids.flatMap { w in
    w.flatMap { Array(table[(Int($0) * config.hidden)..<(Int($0) + 1) * config.hidden]) }
  }
}

// MARK: - float64 reference forward

/// The example model forward in float64 from the given weights (by name), on `ids`; returns
/// the logits `[samples · tokens, vocab]`.
private func referenceLogits(_ w: [String: [Double]]) -> [Double] {
  let d = config.hidden, hd = config.headDim, nh = config.heads, kvh = config.kvHeads
  let ffn = config.ffn, V = config.vocab, eps = config.eps
  func linear(_ x: [Double], _ rows: Int, _ name: String, _ out: Int, _ inp: Int) -> [Double] {
    let W = w[name]!
    var y = [Double](repeating: 0, count: rows * out)
    for r in 0..<rows {
      for o in 0..<out {
        var s = 0.0
        for i in 0..<inp { s += x[r * inp + i] * W[o * inp + i] }
        y[r * out + o] = s
      }
    }
    return y
  }
  func rms(_ x: [Double], _ rows: Int, _ name: String) -> [Double] {
    let g = w[name]!
    var y = x
    for r in 0..<rows {
      var ss = 0.0
      for j in 0..<d { ss += x[r * d + j] * x[r * d + j] }
      let inv = 1 / (ss / Double(d) + eps).squareRoot()
      for j in 0..<d { y[r * d + j] = g[j] * x[r * d + j] * inv }
    }
    return y
  }
  func rope(_ x: inout [Double], heads: Int) {
    let half = hd / 2
    for s in 0..<samples {
      for p in 0..<tokens {
        for h in 0..<heads {
          let o = (s * tokens + p) * heads * hd + h * hd
          for i in 0..<half {
            let a = Double(p) / pow(config.theta, Double(2 * i) / Double(hd))
            let (u, v) = (x[o + i], x[o + i + half])
            x[o + i] = u * cos(a) - v * sin(a)
            x[o + i + half] = v * cos(a) + u * sin(a)
          }
        }
      }
    }
  }
  let table = w["model.embed_tokens.weight"]!
  var x = ids.flatMap { s in s.flatMap { Array(table[(Int($0) * d)..<((Int($0) + 1) * d)]) } }
  let rows = samples * tokens
  for b in 0..<config.blocks {
    let p = "model.layers.\(b)."
    let h = rms(x, rows, p + "input_layernorm.weight")
    var q = linear(h, rows, p + "self_attn.q_proj.weight", nh * hd, d)
    var k = linear(h, rows, p + "self_attn.k_proj.weight", kvh * hd, d)
    let v = linear(h, rows, p + "self_attn.v_proj.weight", kvh * hd, d)
    rope(&q, heads: nh)
    rope(&k, heads: kvh)
    var a = [Double](repeating: 0, count: rows * nh * hd)
    for s in 0..<samples {
      for head in 0..<nh {
        let g = head / (nh / kvh)
        for i in 0..<tokens {
          var scores = [Double](repeating: 0, count: i + 1)
          for j in 0...i {
            var dot = 0.0
            for c in 0..<hd {
              dot +=
                q[(s * tokens + i) * nh * hd + head * hd + c]
                * k[(s * tokens + j) * kvh * hd + g * hd + c]
            }
            scores[j] = dot / Double(hd).squareRoot()
          }
          let m = scores.max()!
          let e = scores.map { exp($0 - m) }
          let z = e.reduce(0, +)
          for c in 0..<hd {
            var acc = 0.0
            for j in 0...i { acc += e[j] / z * v[(s * tokens + j) * kvh * hd + g * hd + c] }
            a[(s * tokens + i) * nh * hd + head * hd + c] = acc
          }
        }
      }
    }
    let o = linear(a, rows, p + "self_attn.o_proj.weight", d, nh * hd)
    let x1 = zip(x, o).map { $0 + $1 }
    let h2 = rms(x1, rows, p + "post_attention_layernorm.weight")
    let gt = linear(h2, rows, p + "mlp.gate_proj.weight", ffn, d)
    let up = linear(h2, rows, p + "mlp.up_proj.weight", ffn, d)
    let prod = zip(gt, up).map { $0 / (1 + exp(-$0)) * $1 }
    let dn = linear(prod, rows, p + "mlp.down_proj.weight", d, ffn)
    x = zip(x1, dn).map { $0 + $1 }
  }
  return linear(rms(x, rows, "model.norm.weight"), rows, "model.embed_tokens.weight", V, d)
}

private func referenceKD(_ z: [Double], _ teacher: TeacherTopK) -> Double {
  let V = config.vocab, k = teacher.k
  var total = 0.0
  for r in 0..<(samples * tokens) {
    let row = Array(z[(r * V)..<((r + 1) * V)])
    let m = row.max()!
    let lse = m + log(row.map { exp($0 - m) }.reduce(0, +))
    var top = Set<Int>()
    for i in 0..<k {
      let j = Int(teacher.index[r * k + i])
      top.insert(j)
      let p = Double(teacher.prob[r * k + i])
      if p > 0 { total += p * (log(p) - (row[j] - lse)) }
    }
    let restQ = (0..<V).filter { !top.contains($0) }.map { exp(row[$0] - lse) }.reduce(0, +)
    let rMass = Double(teacher.rest[r])
    total += rMass * (log(rMass) - log(restQ))
  }
  return total / Double(samples * tokens)
}

private func referenceCE(_ z: [Double]) -> Double {
  let V = config.vocab
  var total = 0.0
  for s in 0..<samples {
    for t in 0..<(tokens - 1) {
      let row = Array(z[((s * tokens + t) * V)..<((s * tokens + t + 1) * V)])
      let m = row.max()!
      total += m + log(row.map { exp($0 - m) }.reduce(0, +)) - row[Int(ids[s][t + 1])]
    }
  }
  return total / Double(samples * (tokens - 1))
}

// MARK: - parameters in float64

/// One trainable linear's parameters in float64 and `ŵ` from them, with the codes, clamp
/// decisions and rounding residuals frozen at the evaluation point (the straight-through
/// surrogate the analytic gradient differentiates; for `params=scales` it is the exact
/// function, codes being fixed).
private struct Params {
  var scale: [Double], zero: [Double], weights: [Double]?
  let codes: [Double], inside: [Bool], residual: [Double]
  let l: TrainableQuantLinear

  init(_ l: TrainableQuantLinear) {
    self.l = l
    scale = l.scale.map(Double.init)
    zero = l.zero.map(Double.init)
    weights = l.weights?.map(Double.init)
    var out = [Float](repeating: 0, count: l.rows * l.cols)
    out.withUnsafeMutableBufferPointer { l.qdq(into: $0.baseAddress!) }
    codes = l.codes.map(Double.init)
    var inside = [Bool](repeating: false, count: codes.count)
    var residual = [Double](repeating: 0, count: codes.count)
    if let w = weights {
      for r in 0..<l.rows {
        for c in 0..<l.cols {
          let i = r * l.cols + c, g = r * l.groupsPerRow + c / l.groupSize
          let x = w[i] / scale[g] + (zero.isEmpty ? 0 : zero[g])
          let q = x.rounded(.toNearestOrEven)
          inside[i] = q >= Double(l.scheme.qmin) && q <= Double(l.scheme.qmax)
          residual[i] = q - x
        }
      }
    }
    self.inside = inside
    self.residual = residual
  }

  var dequantized: [Double] {
    var out = [Double](repeating: 0, count: codes.count)
    for r in 0..<l.rows {
      for c in 0..<l.cols {
        let i = r * l.cols + c, g = r * l.groupsPerRow + c / l.groupSize
        let s = scale[g], z = zero.isEmpty ? 0 : zero[g]
        if let w = weights, inside[i] {
          out[i] = s * (w[i] / s + z + residual[i] - z)
        } else {
          out[i] = s * (codes[i] - z)
        }
      }
    }
    return out
  }
}

private enum Kind: CustomStringConvertible {
  case scale(Int), zero(Int), weight(Int)
  var description: String {
    switch self {
    case .scale(let i): "scale[\(i)]"
    case .zero(let i): "zero[\(i)]"
    case .weight(let i): "weight[\(i)]"
    }
  }
}

/// Analytic gradients of the chosen parameters and their float64 central differences.
private func check(
  pipeline: String, trainWeights: Bool, loss: FinetuneLossKind, picks: [(String, Kind)],
  dropRestMass: Bool = false
) throws -> [(name: String, kind: Kind, analytic: Double, numeric: Double)] {
  let m = try quantized(pipeline)
  let model = try WholeModel(module: m, trainWeights: trainWeights)
  let x0 = embedded(m)
  var teacher = TeacherTopK(k: 8)
  try model.useFloatWeights(true)
  let zf = x0.withUnsafeBufferPointer {
    model.logits($0.baseAddress!, samples: samples, tokens: tokens)
  }
  teacher.append(zf, rows: samples * tokens, vocab: config.vocab)
  try model.useFloatWeights(false)
  var used = teacher
  if dropRestMass { used.rest = used.rest.map { _ in 0 } }

  model.writeWeights()
  for l in model.allLinears { l.clearGradients() }
  _ = x0.withUnsafeBufferPointer { xp in
    model.lossAndGradients(xp.baseAddress!, samples: samples, tokens: tokens) { z, dz in
      loss == .kd
        ? FinetuneLoss.kd(
          logits: z, rows: samples * tokens, vocab: config.vocab, teacher: used, firstPosition: 0,
          dz: dz)
        : FinetuneLoss.ce(
          logits: z, samples: samples, tokens: tokens, vocab: config.vocab, targets: ids, dz: dz)
    }
  }

  // Float64 reference weights: every weight of the module in float64, the trainable ones
  // from their parameters.
  var base: [String: [Double]] = [:]
  for name in m.weights.names {
    switch m.weights[name]! {
    case .dense(let t): base[name] = t.floats().map(Double.init)
    case .quantized(let q): base[name] = q.dequantized().map(Double.init)
    }
  }
  var params: [String: Params] = [:]
  for l in model.allLinears {
    params[l.name] = Params(l)
    base[l.name] = params[l.name]!.dequantized
  }
  func lossAt(_ name: String, _ p: Params) -> Double {
    var w = base
    w[name] = p.dequantized
    let z = referenceLogits(w)
    return loss == .kd ? referenceKD(z, teacher) : referenceCE(z)
  }
  var out: [(String, Kind, Double, Double)] = []
  for (name, kind) in picks {
    let l = try #require(model.allLinears.first { $0.name == name }, "\(name)")
    let p0 = params[name]!
    func shifted(_ h: Double) -> Params {
      var p = p0
      switch kind {
      case .scale(let i): p.scale[i] += h
      case .zero(let i): p.zero[i] += h
      case .weight(let i): p.weights![i] += h
      }
      return p
    }
    let (analytic, h): (Float, Double) =
      switch kind {
      case .scale(let i): (l.gradScale[i], abs(p0.scale[i]) * 1e-4)
      case .zero(let i): (l.gradZero[i], 1e-4)
      case .weight(let i): (l.gradWeights![i], 1e-5)
      }
    let numeric = (lossAt(name, shifted(h)) - lossAt(name, shifted(-h))) / (2 * h)
    out.append((name, kind, Double(analytic), numeric))
  }
  return out
}

/// |analytic − numeric| within 1e-3 of the numeric value plus a floor of 1e-3 of the largest
/// gradient checked (f32 rounding of the analytic side).
private func agrees(_ rows: [(name: String, kind: Kind, analytic: Double, numeric: Double)]) -> Bool
{
  let floor = 1e-3 * (rows.map { abs($0.numeric) }.max() ?? 0)
  return rows.allSatisfy { abs($0.analytic - $0.numeric) <= 1e-3 * abs($0.numeric) + floor }
}

private let p0 = "model.layers.0.", p1 = "model.layers.1."
private let scalePicks: [(String, Kind)] = [
  (p0 + "self_attn.q_proj.weight", .scale(5)), (p0 + "self_attn.k_proj.weight", .scale(11)),
  (p0 + "self_attn.v_proj.weight", .scale(2)), (p0 + "mlp.gate_proj.weight", .scale(40)),
  (p1 + "self_attn.o_proj.weight", .scale(7)), (p1 + "mlp.down_proj.weight", .scale(30)),
  (p1 + "mlp.up_proj.weight", .scale(100)),
]

@Test(arguments: [FinetuneLossKind.kd, .ce])
func finetuneScaleGradientsMatchFiniteDifferences(_ loss: FinetuneLossKind) throws {
  let rows = try check(
    pipeline: "rtn<bits=3;group-size=16>", trainWeights: false, loss: loss, picks: scalePicks)
  for r in rows {
    print("\(loss) \(r.name) \(r.kind): analytic \(r.analytic) numeric \(r.numeric)")
  }
  #expect(rows.allSatisfy { $0.numeric != 0 })
  #expect(agrees(rows))
}

@Test(arguments: [FinetuneLossKind.kd, .ce])
func finetuneZeroPointGradientsMatchFiniteDifferences(_ loss: FinetuneLossKind) throws {
  let picks: [(String, Kind)] =
    scalePicks + [
      (p0 + "self_attn.q_proj.weight", .zero(5)), (p0 + "mlp.up_proj.weight", .zero(3)),
      (p1 + "self_attn.v_proj.weight", .zero(9)), (p1 + "mlp.down_proj.weight", .zero(30)),
    ]
  let rows = try check(
    pipeline: "rtn<bits=3;group-size=16;no-sym>", trainWeights: false, loss: loss, picks: picks)
  for r in rows {
    print("\(loss) \(r.name) \(r.kind): analytic \(r.analytic) numeric \(r.numeric)")
  }
  #expect(agrees(rows))
}

@Test(arguments: [FinetuneLossKind.kd, .ce])
func finetuneStraightThroughGradientsMatchFiniteDifferences(_ loss: FinetuneLossKind) throws {
  let picks: [(String, Kind)] = [
    (p0 + "self_attn.q_proj.weight", .weight(70)), (p0 + "self_attn.k_proj.weight", .weight(300)),
    (p0 + "mlp.down_proj.weight", .weight(1000)), (p1 + "self_attn.o_proj.weight", .weight(123)),
    (p1 + "mlp.gate_proj.weight", .weight(4000)), (p0 + "self_attn.v_proj.weight", .scale(3)),
    (p1 + "mlp.up_proj.weight", .scale(50)), (p1 + "self_attn.k_proj.weight", .zero(4)),
  ]
  let rows = try check(
    pipeline: "rtn<bits=3;group-size=16;no-sym>", trainWeights: true, loss: loss, picks: picks)
  for r in rows {
    print("\(loss) \(r.name) \(r.kind): analytic \(r.analytic) numeric \(r.numeric)")
  }
  #expect(agrees(rows))
}

/// The check has the power to see a dropped term: without the rest-mass term of the KD
/// gradient, or without a zero point's share of its group's scale gradient, it fails.
@Test func finetuneGradientCheckCatchesDroppedTerms() throws {
  let rows = try check(
    pipeline: "rtn<bits=3;group-size=16>", trainWeights: false, loss: .kd, picks: scalePicks,
    dropRestMass: true)
  #expect(!agrees(rows))
  let asym = try check(
    pipeline: "rtn<bits=3;group-size=16;no-sym>", trainWeights: false, loss: .ce,
    picks: [(p1 + "mlp.down_proj.weight", .scale(30)), (p1 + "mlp.down_proj.weight", .zero(30))])
  #expect(agrees(asym))
  // ∂L/∂s = Σ dŵ·(q − z) and ∂L/∂z = −s·Σ dŵ: dropping the −z term adds z·Σ dŵ = −z·∂L/∂z / s.
  let m = try quantized("rtn<bits=3;group-size=16;no-sym>")
  let l = try TrainableQuantLinear(
    name: p1 + "mlp.down_proj.weight", m.weights.quantized(p1 + "mlp.down_proj.weight")!,
    trainWeights: false)
  let z = Double(l.zero[30]), s = Double(l.scale[30])
  #expect(z != 0)
  var dropped = asym
  dropped[0].analytic -= z * asym[1].analytic / s
  #expect(!agrees([dropped[0]]))
}
