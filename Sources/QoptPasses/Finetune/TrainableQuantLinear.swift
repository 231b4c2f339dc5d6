import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// What `finetune` trains in one integer-quantized linear weight, with its quantize-dequantize
/// forward, the exact gradient of each parameter from `∂L/∂ŵ`, Adam's moments, and the codes
/// and scales it freezes to.
///
/// Parameters (codes, scales and zero points in the layout `rtn` stores; asymmetric codes and
/// zero points both shifted by −2^(b−1), which cancels in `code − zero`):
/// - `params=scales`: the scales `s` and, for asymmetric schemes, the zero points `z` (held as
///   floats while training, rounded when frozen); the codes `q` stay fixed:
///   `ŵ = s·(q − z)`, so `∂ŵ/∂s = q − z` and `∂ŵ/∂z = −s` (exact, smooth).
/// - `params=scales+weights`: also the float weights `w`, with codes re-derived each step,
///   `q = clamp(round(w/s + z), qmin, qmax)`, `ŵ = s·(q − z)`, and rounding passed straight
///   through: inside the clamp range `∂ŵ/∂w = 1`, `∂ŵ/∂s = q − z − w/s` (LSQ's step-size
///   gradient), `∂ŵ/∂z = 0`; outside it `∂ŵ/∂w = 0`, `∂ŵ/∂s = q − z`, `∂ŵ/∂z = −s`.
///
/// Memory: one byte per weight (the codes) plus O(groups); with weights trained, 13 more bytes
/// per weight (the f32 weights, their gradient, Adam's two moments) and one for the clamp mask.
package final class TrainableQuantLinear {
  package let name: String
  package let rows: Int, cols: Int
  package let scheme: IntScheme
  package let groupSize: Int
  package let groupsPerRow: Int
  package let perTensor: Bool
  package var scale: [Float]
  /// Empty for symmetric schemes.
  package var zero: [Float]
  package var codes: [Int8]
  /// The float weights, when they train.
  package var weights: [Float]?
  /// Gradients of the last `backward` (accumulated until `clearGradients`).
  package var gradScale: [Float], gradZero: [Float], gradWeights: [Float]?
  /// Adam's first and second moments, laid out as the parameters (scale, zero, weights).
  var moments: [[Float]]
  /// With trained weights: whether each code of the last `qdq` was inside the clamp range.
  private var inside: [Bool]

  /// From a quantized weight as `rtn` (or `autoround`) left it; with `trainWeights` the float
  /// weights start from the ones it was quantized from when at hand, else from its dequantized
  /// values.
  package init(name: String, _ q: QuantizedTensor, trainWeights: Bool) throws {
    guard case .int(let s) = q.scheme, q.shape.count == 2 else {
      throw PassError("weight \(Printer.symbol(name)) is not an integer-quantized matrix")
    }
    self.name = name
    rows = q.shape[0]
    cols = q.shape[1]
    scheme = s
    perTensor = s.granularity == .tensor
    groupsPerRow = s.granularity.groupsPerRow(columns: cols)
    if case .group(let n) = s.granularity { groupSize = n } else { groupSize = cols }
    scale = q.scale.floats()
    zero = q.zeroPoint.map { $0.int8s().map(Float.init) } ?? []
    codes = q.codes.int8s()
    let expected = perTensor ? 1 : rows * groupsPerRow
    guard scale.count == expected, zero.isEmpty || zero.count == expected,
      codes.count == rows * cols
    else {
      throw PassError("weight \(Printer.symbol(name)) has scales or codes of the wrong size")
    }
    if trainWeights {
      let w = q.source?.floats() ?? q.dequantized()
      weights = w
      gradWeights = [Float](repeating: 0, count: w.count)
    }
    gradScale = [Float](repeating: 0, count: scale.count)
    gradZero = [Float](repeating: 0, count: zero.count)
    moments = []
    inside = trainWeights ? [Bool](repeating: true, count: rows * cols) : []
    moments = parameterCounts.flatMap { n in
      [[Float](repeating: 0, count: n), [Float](repeating: 0, count: n)]
    }
  }

  /// Element counts of the parameter arrays, in the order scale, zero, weights.
  var parameterCounts: [Int] { [scale.count, zero.count, weights?.count ?? 0] }

  @inline(__always)
  func group(_ r: Int, _ c: Int) -> Int { perTensor ? 0 : r * groupsPerRow + c / groupSize }

  private var qmin: Float { Float(scheme.qmin) }
  private var qmax: Float { Float(scheme.qmax) }

  /// Writes `ŵ` (`rows · cols` floats) into `out`.
  package func qdq(into out: UnsafeMutablePointer<Float>) {
    let hasZero = !zero.isEmpty
    for r in 0..<rows {
      for c in 0..<cols {
        let g = group(r, c), i = r * cols + c
        let s = scale[g], z: Float = hasZero ? zero[g] : 0
        if let w = weights {
          let x = (w[i] / s + z).rounded(.toNearestOrEven)
          let q = min(max(x, qmin), qmax)
          inside[i] = x == q
          codes[i] = Int8(q)
          out[i] = s * (q - z)
        } else {
          out[i] = s * (Float(codes[i]) - z)
        }
      }
    }
  }

  /// Adds the gradients of the parameters from `dw = ∂L/∂ŵ`, using the codes of the last
  /// `qdq`.
  package func backward(dw: UnsafePointer<Float>) {
    let hasZero = !zero.isEmpty
    for r in 0..<rows {
      for c in 0..<cols {
        let g = group(r, c), i = r * cols + c
        let s = scale[g], z: Float = hasZero ? zero[g] : 0
        let q = Float(codes[i]), d = dw[i]
        if let w = weights, inside[i] {
          gradWeights![i] += d  // safe: allocated with `weights`
          gradScale[g] += d * (q - z - w[i] / s)
        } else {
          gradScale[g] += d * (q - z)
          if hasZero { gradZero[g] -= d * s }
        }
      }
    }
  }

  package func clearGradients() {
    for i in gradScale.indices { gradScale[i] = 0 }
    for i in gradZero.indices { gradZero[i] = 0 }
    // safe: checked
    if gradWeights != nil { for i in gradWeights!.indices { gradWeights![i] = 0 } }
  }

  /// One Adam step (β₁ 0.9, β₂ 0.999, ε 1e-8, bias-corrected, step `t` ≥ 1) with learning
  /// rate `lr` for scales and zero points and `weightLR` for the float weights.
  package func adam(t: Int, lr: Float, weightLR: Float) {
    let b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8
    let c1 = 1 - pow(b1, Float(t)), c2 = 1 - pow(b2, Float(t))
    func update(_ p: inout [Float], _ g: [Float], _ k: Int, _ rate: Float) {
      for i in p.indices {
        let m = b1 * moments[2 * k][i] + (1 - b1) * g[i]
        let v = b2 * moments[2 * k + 1][i] + (1 - b2) * g[i] * g[i]
        moments[2 * k][i] = m
        moments[2 * k + 1][i] = v
        p[i] -= rate * (m / c1) / ((v / c2).squareRoot() + eps)
      }
    }
    update(&scale, gradScale, 0, lr)
    update(&zero, gradZero, 1, lr)
    if var w = weights, let g = gradWeights {
      weights = nil  // unique reference while updated in place
      update(&w, g, 2, weightLR)
      weights = w
    }
  }

  /// The codes, scales and zero points to store: scales rounded to the scheme's scale dtype,
  /// zero points to integers, and (with trained weights) the codes re-rounded from the trained
  /// weights with those stored values, so the frozen weight is exactly what the IR holds.
  package func freeze() -> QuantizedTensor {
    let shape = perTensor ? [1] : [rows, groupsPerRow]
    let st = TensorData(floats: scale, shape: shape, as: scheme.scaleType)
    let s = st.floats()
    let z = zero.map { min(max($0.rounded(.toNearestOrEven), -128), 127) }
    var out = codes
    if let w = weights {
      for r in 0..<rows {
        for c in 0..<cols {
          let g = group(r, c), i = r * cols + c
          let x = (w[i] / s[g] + (z.isEmpty ? 0 : z[g])).rounded(.toNearestOrEven)
          out[i] = Int8(min(max(x, qmin), qmax))
        }
      }
    }
    return QuantizedTensor(
      scheme: .int(scheme), codes: TensorData(int8: out, shape: [rows, cols]), scale: st,
      zeroPoint: z.isEmpty ? nil : TensorData(int8: z.map { Int8($0) }, shape: shape))
  }

  /// Every trained value (parameters, then Adam's moments), for checkpoints.
  var state: [[Float]] {
    get { [scale, zero, weights ?? []] + moments }
    set {
      scale = newValue[0]
      zero = newValue[1]
      if weights != nil { weights = newValue[2] }
      moments = Array(newValue[3...])
    }
  }
}
