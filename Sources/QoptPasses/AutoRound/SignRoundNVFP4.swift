import QoptIR

/// AutoRound's tunable state for one NVFP4 weight (autoround.md §11, auto-round's
/// `ref_nvfp4_quant`): a rounding offset V per weight living in the FP4 domain and a max-side
/// clipping factor α per group of 16; the global scale is fixed before tuning (fused across the
/// linears that read the same input, as auto-round's `update_fused_layer_global_scales`).
///
///     s_g  = e4m3(clamp(gs · ((α · amax_16) / 6), ±448)), an exact 0 → 0.125   (straight through e4m3)
///     step = s_g / gs
///     w_qdq = E2M1(clamp(w / step + V, −6, 6)) · step                          (straight through E2M1)
///
/// These are `rtn<scheme=nvfp4>`'s operations in its order (`NVFP4Quantizer`: divide by the
/// step, `amax / 6`, zero scales stored as 0.125), so with V = 0 and α = 1 the codes and scales
/// are the RTN ones bit for bit, and `w_qdq` is exactly what the runtime dequantizes from them.
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
  /// Per group state of the last `qdq`: the e4m3 scale byte, the step `s_g / gs`, and whether
  /// the scale depends on α (inside the ±448 clamp and not a zero replaced by 0.125).
  private var scaleByte: [UInt8], steps: [Float], tunableScale: [Bool]
  /// The best iteration's codes, α and β (`saveBest`), and the codes in use once it is put
  /// back (`restoreBest`): then `qdq` and `finalize` read them instead of rounding with V.
  private var best: (codes: PackedCodes, alpha: [Float], beta: [Float])?
  private var frozen: PackedCodes?

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
    steps = [Float](repeating: 0, count: groups)
    tunableScale = [Bool](repeating: true, count: groups)
  }

  /// The global scale of a weight on its own: `448 · 6 · (1/amax)` (auto-round's
  /// `calculate_gparam`; the same value `rtn<scheme=nvfp4>` computes).
  package static func globalScale(of weights: [Float]) -> Float {
    weights.withUnsafeBufferPointer { NVFP4Quantizer.globalScale(amax: NVFP4Quantizer.amax($0)) }
  }

  /// E2M1 rounding of a value already clamped to ±6 (ties to even, as `cast_to_fp4`).
  @inline(__always) private static func fp4(_ c: Float) -> Float { e2m1ToFloat(floatToE2M1(c)) }

  /// `w / step + V` clamped to ±6; a V of 0 adds nothing (so −0 keeps its sign bit, as in rtn).
  @inline(__always) private static func scaled(_ w: Float, _ step: Float, _ v: Float) -> Float {
    let x = w / step
    return min(max(v == 0 ? x : x + v, -6), 6)
  }

  package func qdq(into out: UnsafeMutablePointer<Float>) {
    updateSteps()
    let c = UnsafeMutablePointer<Int8>.allocate(capacity: Self.group)
    defer { c.deallocate() }
    for gi in alpha.indices {
      let step = steps[gi]
      let base = gi * Self.group
      if let frozen {
        // fp4(x) · step with fp4(x) = E2M1 value of the stored code.
        frozen.load(into: c, count: Self.group, at: base)
        for k in 0..<Self.group {
          out[base + k] = e2m1ToFloat(UInt8(bitPattern: c[k]) & 0xF) * step
        }
        continue
      }
      for i in base..<(base + Self.group) {
        out[i] = Self.fp4(Self.scaled(w[i], step, v[i])) * step
      }
    }
  }

  /// Clamps α/β to [0, 1] and sets every group's scale byte, step and whether the scale is
  /// tunable (the part of `qdq` that `finalize` and `saveBest` need).
  private func updateSteps() {
    let gs = globalScale
    for gi in alpha.indices {
      alpha[gi] = min(max(alpha[gi], 0), 1)
      beta[gi] = min(max(beta[gi], 0), 1)
      let pre = gs * ((gamax[gi] * alpha[gi]) / 6)
      var sb = floatToE4M3(min(max(pre, -448), 448))
      let zero = sb == 0 || sb == 0x80
      if zero { sb = 0x20 }  // an exact zero scale becomes 0.125, as rtn stores it
      scaleByte[gi] = sb
      tunableScale[gi] = !zero && pre >= -448 && pre <= 448
      steps[gi] = e4m3ToFloat(sb) / gs
    }
  }

  /// The E2M1 codes of the current V and steps, into `out` (`rows · cols`).
  private func codes(into out: UnsafeMutablePointer<Int8>) {
    for gi in alpha.indices {
      let step = steps[gi]
      for i in (gi * Self.group)..<((gi + 1) * Self.group) {
        out[i] = Int8(bitPattern: floatToE2M1(Self.scaled(w[i], step, v[i])))
      }
    }
  }

  package func backward(dw: UnsafePointer<Float>, dv: UnsafeMutablePointer<Float>, dAlpha: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>) {
    for gi in alpha.indices {
      let step = steps[gi]
      let base = gi * Self.group
      dBeta[gi] = 0
      var dstep: Float = 0
      for i in base..<(base + Self.group) {
        let u = w[i] / step + v[i]
        let inside: Float = (u >= -6 && u <= 6) ? 1 : 0
        let q = Self.fp4(min(max(u, -6), 6))
        let g = dw[i]  // read before `dv[i]` is written: `dv` may be `dw` itself
        dv[i] = g * step * inside
        // out = q(w/step + V) · step: ∂out/∂step = q − inside · w / step.
        dstep += g * (q - inside * w[i] / step)
      }
      // step = s/gs, s passes straight through e4m3 inside the clamp, pre = gs · (amax · α / 6):
      // ∂step/∂α = amax / 6.
      dAlpha[gi] = tunableScale[gi] ? dstep * gamax[gi] / 6 : 0
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
  /// stores them (the codes of the `qdq` forward, so they dequantize to exactly its values).
  package func finalize() -> QuantizedTensor {
    updateSteps()
    var codes = [Int8](repeating: 0, count: rows * cols)
    codes.withUnsafeMutableBufferPointer { c in
      // safe: weights are non-empty
      if let frozen {
        frozen.load(into: c.baseAddress!, count: rows * cols, at: 0)
        for i in c.indices { c[i] = Int8(bitPattern: UInt8(bitPattern: c[i]) & 0xF) }
      } else {
        self.codes(into: c.baseAddress!)
      }
    }
    return QuantizedTensor(
      scheme: .nvfp4(group: Self.group), codes: TensorData(int8: codes, shape: [rows, cols]),
      scale: TensorData(dtype: .f8e4m3, shape: [rows, groupsPerRow], bytes: scaleByte),
      globalScale: TensorData(floats: [globalScale], shape: [1]))
  }

  /// The tunable parameters (setting them drops stored best codes).
  package var parameters: (v: [Float], alpha: [Float], beta: [Float]) {
    get { (v, alpha, beta) }
    set {
      (v, alpha, beta) = newValue
      frozen = nil
    }
  }

  package func saveBest() {
    precondition(frozen == nil, "a restored best is final")
    updateSteps()  // the steps of the last qdq: α has not moved since
    // Rewritten in place: `best` is cleared first, so `b` holds the only reference.
    var b = best ?? (PackedCodes(count: rows * cols, nibbles: true), [], [])
    best = nil
    var row = [Int8](repeating: 0, count: cols)
    row.withUnsafeMutableBufferPointer { rp in
      for r in 0..<rows {
        for gi in (r * groupsPerRow)..<((r + 1) * groupsPerRow) {
          let step = steps[gi]
          for i in (gi * Self.group)..<((gi + 1) * Self.group) {
            rp[i - r * cols] = Int8(bitPattern: floatToE2M1(Self.scaled(w[i], step, v[i])))
          }
        }
        b.codes.store(rp.baseAddress!, count: cols, at: r * cols)  // safe: cols ≥ 16
      }
    }
    b.alpha = alpha
    b.beta = beta
    best = b
  }

  package func restoreBest() {
    guard let b = best else { preconditionFailure("restoreBest without saveBest") }
    (alpha, beta, frozen, best) = (b.alpha, b.beta, b.codes, nil)
    v = []
  }

  package var bestBytes: Int { (best?.codes.byteCount ?? 0) + 8 * (best?.alpha.count ?? 0) }
}
