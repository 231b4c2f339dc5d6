import QoptIR

/// AutoRound's tunable state for one NVFP4 weight (autoround.md §11, auto-round's
/// `ref_nvfp4_quant`): a rounding offset V per weight living in the FP4 domain and a max-side
/// clipping factor α per group of 16; the global scale is fixed before tuning (fused across the
/// linears that read the same input, as auto-round's `update_fused_layer_global_scales`).
///
///     s_g = e4m3(clamp(gs · (α · amax_16 · (1/6)), ±448))      (straight through e4m3)
///     os  = 1 / (s_g · (1/gs))                                  (0 when s_g = 0)
///     w_qdq = E2M1(clamp(w · os + V, −6, 6)) · (1/os)           (straight through E2M1)
///
/// β is carried for the shared interface but unused (auto-round uses only `max_scale` here).
/// Memory: 2 floats per weight plus O(groups).
package final class SignRoundNVFP4: TunableLinear {
  package let name: String
  package let rows: Int, cols: Int, groupsPerRow: Int
  static let group = NVFP4Quantizer.groupSize
  /// The float weights (never modified) and the fixed global scale.
  let w: [Float]
  package let globalScale: Float
  /// Per group max |w| of the original weights.
  private let gamax: [Float]
  package var v: [Float]
  package var alpha: [Float], beta: [Float]
  /// Per group state of the last `qdq`: the e4m3 scale byte, `os`, and whether the scale was
  /// inside the ±448 clamp (no gradient through it otherwise).
  private var scaleByte: [UInt8], os: [Float], inClamp: [Bool]

  /// `cols` must be a multiple of 16 (checked by the pass).
  package init(name: String, weights: [Float], rows: Int, cols: Int, globalScale: Float) {
    self.name = name
    self.rows = rows
    self.cols = cols
    groupsPerRow = cols / Self.group
    w = weights
    self.globalScale = globalScale
    let groups = rows * groupsPerRow
    var am = [Float](repeating: 0, count: groups)
    for gi in 0..<groups {
      var m: Float = 0
      for i in (gi * Self.group)..<((gi + 1) * Self.group) { let a = abs(weights[i]); m = a > m ? a : m }
      am[gi] = m
    }
    gamax = am
    v = [Float](repeating: 0, count: rows * cols)
    alpha = [Float](repeating: 1, count: groups)
    beta = alpha
    scaleByte = [UInt8](repeating: 0, count: groups)
    os = [Float](repeating: 0, count: groups)
    inClamp = [Bool](repeating: true, count: groups)
  }

  /// The global scale of a weight on its own: `448 · 6 · (1/amax)` (auto-round's
  /// `calculate_gparam`; the same value `rtn<scheme=nvfp4>` computes).
  package static func globalScale(of weights: [Float]) -> Float {
    weights.withUnsafeBufferPointer { NVFP4Quantizer.globalScale(amax: NVFP4Quantizer.amax($0)) }
  }

  private static let sixth = Float(1.0 / 6.0)

  @inline(__always) private static func recip(_ x: Float) -> Float { x == 0 ? 0 : 1 / x }

  /// E2M1 rounding of a value already clamped to ±6 (ties to even, as `cast_to_fp4`).
  @inline(__always) private static func fp4(_ c: Float) -> Float { e2m1ToFloat(floatToE2M1(c)) }

  package func qdq(into out: UnsafeMutablePointer<Float>) {
    let gs = globalScale, ig = Self.recip(gs)
    for gi in alpha.indices {
      alpha[gi] = min(max(alpha[gi], 0), 1)
      beta[gi] = min(max(beta[gi], 0), 1)
      let pre = gs * ((gamax[gi] * alpha[gi]) * Self.sixth)
      inClamp[gi] = pre >= -448 && pre <= 448
      let sb = floatToE4M3(min(max(pre, -448), 448))
      scaleByte[gi] = sb
      let o = Self.recip(e4m3ToFloat(sb) * ig)
      os[gi] = o
      let r = Self.recip(o)
      let base = gi * Self.group
      for i in base..<(base + Self.group) {
        let c = min(max(w[i] * o + v[i], -6), 6)
        out[i] = Self.fp4(c) * r
      }
    }
  }

  package func backward(dw: UnsafePointer<Float>, dv: UnsafeMutablePointer<Float>, dAlpha: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>) {
    let gs = globalScale, ig = Self.recip(gs)
    for gi in alpha.indices {
      let o = os[gi]
      let base = gi * Self.group
      dBeta[gi] = 0
      guard o != 0 else {
        // A zero scale: the group is all zeros whatever V is; nothing flows back.
        for i in base..<(base + Self.group) { dv[i] = 0 }
        dAlpha[gi] = 0
        continue
      }
      let r = 1 / o
      var dos: Float = 0
      for i in base..<(base + Self.group) {
        let u = w[i] * o + v[i]
        let inside: Float = (u >= -6 && u <= 6) ? 1 : 0
        let q = Self.fp4(min(max(u, -6), 6))
        dv[i] = dw[i] * r * inside
        // out = q(w·os + V) · (1/os): ∂out/∂os = inside · w · (1/os) − q / os².
        dos += dw[i] * (inside * w[i] * r - q * r * r)
      }
      // os = 1/(s·ig): ∂os/∂s = −os² · ig; s passes straight through e4m3 inside the clamp;
      // pre = gs · (amax · α · 1/6).
      let ds = dos * (-o * o * ig)
      dAlpha[gi] = inClamp[gi] ? ds * gs * Self.sixth * gamax[gi] : 0
    }
  }

  package func step(dv: UnsafePointer<Float>, dAlpha: UnsafePointer<Float>, dBeta: UnsafePointer<Float>, lr: Float, minmaxLR: Float, tuneMinmax: Bool) {
    v.withUnsafeMutableBufferPointer { p in
      for i in 0..<p.count { p[i] -= lr * signum(dv[i]) }
    }
    guard tuneMinmax else { return }
    for i in alpha.indices { alpha[i] -= minmaxLR * signum(dAlpha[i]) }
  }

  /// E2M1 codes, E4M3 group scales and the global scale, laid out as `rtn<scheme=nvfp4>`
  /// stores them. A group whose scale rounds to 0 dequantizes to zeros in the tuning forward;
  /// it is stored as codes 0 with scale 0.125, as compressed-tensors stores zero groups.
  package func finalize() -> QuantizedTensor {
    var scratch = [Float](repeating: 0, count: rows * cols)
    scratch.withUnsafeMutableBufferPointer { qdq(into: $0.baseAddress!) }  // safe: weights are non-empty
    var codes = [Int8](repeating: 0, count: rows * cols)
    var scales = scaleByte
    for gi in alpha.indices {
      let o = os[gi]
      let base = gi * Self.group
      if o == 0 {
        scales[gi] = 0x20
        continue
      }
      for i in base..<(base + Self.group) {
        codes[i] = Int8(bitPattern: floatToE2M1(min(max(w[i] * o + v[i], -6), 6)))
      }
    }
    return QuantizedTensor(
      scheme: .nvfp4(group: Self.group), codes: TensorData(int8: codes, shape: [rows, cols]),
      scale: TensorData(dtype: .f8e4m3, shape: [rows, groupsPerRow], bytes: scales),
      globalScale: TensorData(floats: [globalScale], shape: [1]))
  }

  package var parameters: (v: [Float], alpha: [Float], beta: [Float]) {
    get { (v, alpha, beta) }
    set { (v, alpha, beta) = newValue }
  }
}
