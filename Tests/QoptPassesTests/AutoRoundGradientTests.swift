import QoptIR
import QoptPasses
import QoptRuntime
import QoptTestSupport
import Testing

// Whole-block gradient checks of AutoRound's tuning: the block executor's backward (through
// the attention path — RoPE, attention, o_proj — and the MLP) chained with each quantizer's
// straight-through backward must give the derivative of the block loss with respect to every
// linear's rounding offsets V and clipping factors α, β.
//
// The quantize-dequantize forward is piecewise constant in V (it rounds), so the reference is
// the function whose exact gradient the straight-through estimator defines (autoround.md §3):
// every `round_ste(x)` and scale cast is `x + r` with the residual `r` frozen at the base
// point, and every clamp keeps the inside/outside decision it made there (torch's clamp passes
// the gradient on its bounds). At the base point it equals the quantize-dequantize forward;
// around it it is smooth, so central differences of it are a fair reference. It is written
// here from the formulas, in Float64, independently of `SignRoundLinear`/`SignRoundNVFP4`.

/// One linear's straight-through surrogate, frozen at the parameters it was built from.
private protocol Surrogate {
  /// Quantize-dequantize weights for parameters (V, α, β), `rows · cols` values.
  func qdq(v: [Double], alpha: [Double], beta: [Double]) -> [Double]
}

/// autoround.md §3 (`quant_tensor_sym` / `quant_tensor_asym`), groups along rows, the last one
/// short when the group size does not divide the row.
private struct IntSurrogate: Surrogate {
  let w: [Double], rows: Int, cols: Int, group: Int, groups: Int
  let symmetric: Bool, maxq: Double, lo: Double, hi: Double
  var gmin: [Double], gmax: [Double]
  /// Frozen at the base: scale-cast and zero-point rounding residuals and, for sym, which side
  /// is larger (per group); rounding residual and clamp decision (per weight).
  var rs: [Double] = [], rz: [Double] = [], lowSide: [Bool] = [], r: [Double] = [], clampedTo: [Double?] = []

  init(w: [Float], rows: Int, cols: Int, scheme: IntScheme, v: [Float], alpha: [Float], beta: [Float]) {
    self.w = w.map(Double.init)
    self.rows = rows
    self.cols = cols
    groups = scheme.granularity.groupsPerRow(columns: cols)
    if case .group(let n) = scheme.granularity, groups > 1 { group = n } else { group = cols }
    symmetric = scheme.symmetric
    maxq = symmetric ? Double(1 << (scheme.bits - 1)) : Double((1 << scheme.bits) - 1)
    (lo, hi) = symmetric ? (-maxq, maxq - 1) : (0, maxq)
    gmin = [Double](repeating: 0, count: rows * groups)
    gmax = gmin
    for rr in 0..<rows {
      for g in 0..<groups {
        for c in (g * group)..<min(cols, (g + 1) * group) {
          gmin[rr * groups + g] = min(gmin[rr * groups + g], self.w[rr * cols + c])
          gmax[rr * groups + g] = max(gmax[rr * groups + g], self.w[rr * cols + c])
        }
      }
    }
    // Freeze the residuals and decisions at the base parameters.
    let (a, b) = (alpha.map(Double.init), beta.map(Double.init))
    rs = [Double](repeating: 0, count: rows * groups)
    rz = rs
    lowSide = (0..<(rows * groups)).map { -gmin[$0] * b[$0] > gmax[$0] * a[$0] }
    for gi in 0..<(rows * groups) {
      let raw = rawScale(gi, a, b)
      rs[gi] = Double(roundFloat(Float(raw), to: scheme.scaleType)) - raw
      if !symmetric {
        let zp = -gmin[gi] * b[gi] / (raw + rs[gi])
        rz[gi] = zp.rounded(.toNearestOrEven) - zp
      }
    }
    var residual = [Double](repeating: 0, count: rows * cols)
    var clamps = [Double?](repeating: nil, count: rows * cols)
    let (low, high) = (lo, hi)
    forEachWeight(v.map(Double.init), a, b) { i, x, zp, _ in
      let q = x.rounded(.toNearestOrEven)
      residual[i] = q - x
      let pre = q + zp
      clamps[i] = pre < low ? low : (pre > high ? high : nil)
    }
    r = residual
    clampedTo = clamps
  }

  private func rawScale(_ gi: Int, _ a: [Double], _ b: [Double]) -> Double {
    if symmetric { return (lowSide[gi] ? -gmin[gi] * b[gi] : -gmax[gi] * a[gi]) / maxq }
    return (gmax[gi] * a[gi] - gmin[gi] * b[gi]) / maxq
  }

  /// Calls `body(i, w/s + V, zp, s)` for every weight.
  private func forEachWeight(_ v: [Double], _ a: [Double], _ b: [Double], _ body: (Int, Double, Double, Double) -> Void) {
    for rr in 0..<rows {
      for g in 0..<groups {
        let gi = rr * groups + g
        let s = rawScale(gi, a, b) + rs[gi]
        let zp = symmetric ? 0 : -gmin[gi] * b[gi] / s + rz[gi]
        for c in (g * group)..<min(cols, (g + 1) * group) {
          let i = rr * cols + c
          body(i, w[i] / s + v[i], zp, s)
        }
      }
    }
  }

  func qdq(v: [Double], alpha: [Double], beta: [Double]) -> [Double] {
    var out = [Double](repeating: 0, count: rows * cols)
    forEachWeight(v, alpha, beta) { i, x, zp, s in
      let q = clampedTo[i] ?? (x + r[i] + zp)
      out[i] = s * (q - zp)
    }
    return out
  }
}

/// autoround.md §11 (`ref_nvfp4_quant`): groups of 16, scale e4m3(gs · α · amax/6) with a fixed
/// global scale gs, step scale/gs, E2M1 codes of clamp(w/step + V, ±6); β unused.
private struct NVFP4Surrogate: Surrogate {
  let w: [Double], rows: Int, cols: Int, gs: Double
  var amax: [Double]
  var rs: [Double] = [], r: [Double] = [], clampedTo: [Double?] = []

  init(w: [Float], rows: Int, cols: Int, globalScale: Float, v: [Float], alpha: [Float]) {
    self.w = w.map(Double.init)
    self.rows = rows
    self.cols = cols
    gs = Double(globalScale)
    amax = (0..<(rows * cols / 16)).map { g in (0..<16).map { abs(Double(w[g * 16 + $0])) }.max()! }  // safe: 16 values
    let a = alpha.map(Double.init)
    rs = (0..<amax.count).map { g in
      let pre = gs * a[g] * amax[g] / 6
      precondition(abs(pre) < 448, "the surrogate assumes the e4m3 clamp is not hit")
      return Double(e4m3ToFloat(floatToE4M3(Float(pre)))) - pre
    }
    r = [Double](repeating: 0, count: rows * cols)
    clampedTo = [Double?](repeating: nil, count: rows * cols)
    let ov = v.map(Double.init)
    for g in 0..<amax.count {
      let os = step(g, a)
      for i in (g * 16)..<((g + 1) * 16) {
        let u = self.w[i] * os + ov[i]
        if abs(u) > 6 { clampedTo[i] = u > 0 ? 6 : -6 } else { r[i] = Double(e2m1ToFloat(floatToE2M1(Float(u)))) - u }
      }
    }
  }

  /// `os = 1 / (scale / gs)`.
  private func step(_ g: Int, _ a: [Double]) -> Double { 1 / ((gs * a[g] * amax[g] / 6 + rs[g]) / gs) }

  func qdq(v: [Double], alpha: [Double], beta: [Double]) -> [Double] {
    var out = [Double](repeating: 0, count: rows * cols)
    for g in 0..<amax.count {
      let os = step(g, alpha)
      for i in (g * 16)..<((g + 1) * 16) { out[i] = (clampedTo[i] ?? (w[i] * os + v[i] + r[i])) / os }
    }
    return out
  }
}

/// The quantizer of every linear of the block in one gradient check.
enum GradientCheckQuantizer: CustomStringConvertible, Sendable {
  case int(bits: Int, symmetric: Bool, group: Int, scale: DType)
  case nvfp4

  var description: String {
    switch self {
    case .int(let b, let s, let g, let st): "int\(b) \(s ? "sym" : "asym") group \(g) scale \(st.rawValue)"
    case .nvfp4: "nvfp4"
    }
  }
}

@Test(arguments: [
  GradientCheckQuantizer.int(bits: 4, symmetric: true, group: 16, scale: .f16),
  // 64 columns in groups of 24: the last group of every row is 16 wide (as 576 in 128s).
  GradientCheckQuantizer.int(bits: 4, symmetric: true, group: 24, scale: .f32),
  GradientCheckQuantizer.int(bits: 4, symmetric: false, group: 24, scale: .f16),
  GradientCheckQuantizer.int(bits: 3, symmetric: false, group: 32, scale: .f32),
  GradientCheckQuantizer.nvfp4,
])
func autoRoundBlockGradientMatchesFiniteDifferences(_ quantizer: GradientCheckQuantizer) throws {
  let m = ExampleModel.make()
  let f = try #require(m.function(named: "block.0"))
  let exec = try BlockExecutor(function: f, module: m)
  let names = f.body.filter { $0.kind == .linear }.compactMap { $0.operands[1].definingOp?.paramName }
  #expect(names.count == 7)  // q, k, v, o, gate, up, down
  var rng = SplitMix64(seed: 21)
  func uniform(_ n: Int, _ lo: Double, _ hi: Double) -> [Float] { (0..<n).map { _ in Float(lo + (hi - lo) * rng.uniform()) } }

  // Every linear of the block is tuned, with random V and clipping factors.
  var linears: [any TunableLinear] = []
  var surrogates: [any Surrogate] = []
  for name in names {
    let t = try #require(m.weights.dense(name))
    let (rows, cols, w) = (t.shape[0], t.shape[1], t.floats())
    switch quantizer {
    case .int(let bits, let symmetric, let group, let st):
      let scheme = IntScheme(bits: bits, symmetric: symmetric, granularity: .group(group), scaleType: st)
      let l = SignRoundLinear(name: name, weights: w, rows: rows, cols: cols, scheme: scheme)
      l.v = uniform(rows * cols, -0.45, 0.45)
      l.alpha = uniform(l.alpha.count, 0.6, 0.97)
      l.beta = uniform(l.beta.count, 0.6, 0.97)
      linears.append(l)
      surrogates.append(IntSurrogate(w: w, rows: rows, cols: cols, scheme: scheme, v: l.v, alpha: l.alpha, beta: l.beta))
    case .nvfp4:
      let gs = SignRoundNVFP4.globalScale(of: w)
      let l = SignRoundNVFP4(name: name, weights: w, rows: rows, cols: cols, globalScale: gs)
      l.v = uniform(rows * cols, -0.45, 0.45)
      l.alpha = uniform(l.alpha.count, 0.6, 0.97)
      linears.append(l)
      surrogates.append(NVFP4Surrogate(w: w, rows: rows, cols: cols, globalScale: gs, v: l.v, alpha: l.alpha))
    }
  }

  // L = Σ g · block(x): 2 samples of 21 tokens (rows of 16 and more keys run the AVX2 bodies).
  let (samples, tokens, d) = (2, 21, exec.hiddenWidth)
  let x = (0..<(samples * tokens * d)).map { _ in Float(rng.normal()) }
  let g = (0..<(samples * tokens * d)).map { _ in Float(rng.normal()) }
  func loss() -> Double {
    let y = exec.forward(x, samples: samples, tokens: tokens)
    return (0..<g.count).reduce(0.0) { $0 + Double(y[$1]) * Double(g[$1]) }
  }
  func loadBase() { for l in linears { l.qdq(into: exec.weightPointer(l.name)!) } }  // safe: block weights

  // The surrogate is the quantize-dequantize forward at the base point.
  for (l, s) in zip(linears, surrogates) {
    var mine = [Float](repeating: 0, count: l.rows * l.cols)
    mine.withUnsafeMutableBufferPointer { l.qdq(into: $0.baseAddress!) }  // safe: non-empty
    let p = l.parameters
    let ref = s.qdq(v: p.v.map(Double.init), alpha: p.alpha.map(Double.init), beta: p.beta.map(Double.init))
    let worst = zip(mine, ref).map { abs(Double($0) - $1) / max(abs($1), 1e-3) }.max() ?? 0
    #expect(worst < 1e-5, "\(quantizer) \(l.name): the surrogate differs from qdq at the base by \(worst)")
  }

  // Analytic gradients: executor backward to ∂L/∂w_qdq, then each quantizer's backward.
  exec.trainable = Set(names)
  loadBase()
  _ = loss()
  let dW = exec.backward(g)
  var grads: [(v: [Float], a: [Float], b: [Float])] = []
  for l in linears {
    var dv = [Float](repeating: 0, count: l.rows * l.cols)
    var da = [Float](repeating: 0, count: l.rows * l.groupsPerRow), db = da
    l.backward(dw: try #require(dW[l.name]), dv: &dv, dAlpha: &da, dBeta: &db)
    grads.append((dv, da, db))
  }

  // Numeric: central differences of the surrogate, one linear and one kind of parameter at a
  // time (so a wrong q_proj gradient cannot hide behind the MLP's), along two directions: the
  // analytic gradient itself — where, by Cauchy–Schwarz, the slope equals |∇| only if the
  // analytic gradient is the true one — and a random one. Errors are relative to |∇|·|dir|,
  // the largest slope along `dir`. The steps move a code by at most `h` (V) or a clipping
  // factor by at most `h` (α, β); the surrogate is smooth, so only f32 noise limits them.
  for (k, l) in linears.enumerated() {
    let p = l.parameters
    let base = (v: p.v.map(Double.init), a: p.alpha.map(Double.init), b: p.beta.map(Double.init))
    let kinds: [(String, [Float], Double)] =
      [("V", grads[k].v, 0.1), ("alpha", grads[k].a, 0.02)] + (quantizer.isNVFP4 ? [] : [("beta", grads[k].b, 0.02)])
    for (kind, grad, h) in kinds {
      let gradNorm = grad.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
      let gradMax = grad.reduce(0.0) { max($0, abs(Double($1))) }
      #expect(gradNorm > 0, "\(quantizer) \(l.name) ∂L/∂\(kind) is zero")
      guard gradNorm > 0 else { continue }
      let random = (0..<grad.count).map { _ in rng.uniform() * 2 - 1 }
      for (what, dir) in [("gradient", grad.map { Double($0) / gradMax }), ("random", random)] {
        let analytic = zip(grad, dir).reduce(0.0) { $0 + Double($1.0) * $1.1 }
        func shifted(_ e: Double) -> Double {
          var (v, a, b) = base
          for i in 0..<dir.count {
            switch kind {
            case "V": v[i] += e * dir[i]
            case "alpha": a[i] += e * dir[i]
            default: b[i] += e * dir[i]
            }
          }
          loadBase()
          let w = surrogates[k].qdq(v: v, alpha: a, beta: b)
          let ptr = exec.weightPointer(l.name)!  // safe: block weight
          for i in 0..<w.count { ptr[i] = Float(w[i]) }
          return loss()
        }
        let numeric = (shifted(h) - shifted(-h)) / (2 * h)
        let bound = gradNorm * dir.reduce(0.0) { $0 + $1 * $1 }.squareRoot()
        let error = abs(numeric - analytic) / bound
        #expect(error < 2e-3, "\(quantizer) \(l.name) ∂L/∂\(kind) along the \(what): analytic \(analytic), numeric \(numeric)")
      }
    }
    if quantizer.isNVFP4 { #expect(grads[k].b.allSatisfy { $0 == 0 }, "\(l.name): NVFP4 does not use β") }
  }
}

extension GradientCheckQuantizer {
  fileprivate var isNVFP4: Bool { if case .nvfp4 = self { true } else { false } }
}
