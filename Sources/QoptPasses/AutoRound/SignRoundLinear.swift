import QoptIR

/// The tunable state of one quantized linear weight under AutoRound (autoround.md §2–§3): a
/// rounding offset V per weight, clipping factors α (max side) and β (min side) per group, and
/// the quantize-dequantize forward with straight-through rounding plus its exact gradient.
///
/// Layout: `w`, `v` are row-major `[rows, cols]`; groups run along a row (`groupSize`, the last
/// one short when it does not divide `cols`, as auto-round pads); `alpha`, `beta`, the group
/// extrema and scales are `[rows, groupsPerRow]`. Memory: 2 floats per weight plus O(groups).
package final class SignRoundLinear {
  package let name: String
  package let rows: Int, cols: Int, groupSize: Int, groupsPerRow: Int
  let scheme: IntScheme
  /// The float weights (never modified), an f32 copy or the checkpoint's bf16 read by row.
  let w: WeightRows
  /// Per group `min(min w, 0)` and `max(max w, 0)` of the original weights.
  private var gmin: [Float], gmax: [Float]
  package var v: [Float]
  package var alpha: [Float], beta: [Float]
  /// Per group scale and zero point of the last `qdq` (used by `backward` and `finalize`).
  private var scale: [Float], zero: [Float]
  /// Whether the last scale hit the `q_scale_thresh` clamp (no gradient through it).
  private var clamped: [Bool]
  /// The best iteration's codes, α and β (`saveBest`), and the codes in use once it is put
  /// back (`restoreBest`): then `qdq` and `finalize` read them instead of rounding with V.
  private var best: (codes: PackedCodes, alpha: [Float], beta: [Float])?
  private var frozen: PackedCodes?

  package convenience init(
    name: String, weights: [Float], rows: Int, cols: Int, scheme: IntScheme
  ) {
    self.init(
      name: name, rows: WeightRows(floats: weights, rows: rows, cols: cols), scheme: scheme)
  }

  package init(name: String, rows w: WeightRows, scheme: IntScheme) {
    let (rows, cols) = (w.rows, w.cols)
    self.name = name
    self.rows = rows
    self.cols = cols
    self.scheme = scheme
    let gpr = scheme.granularity.groupsPerRow(columns: cols)
    groupsPerRow = gpr
    groupSize =
      gpr == 1 ? cols : { if case .group(let n) = scheme.granularity { n } else { cols } }()
    self.w = w
    v = [Float](repeating: 0, count: rows * cols)
    alpha = [Float](repeating: 1, count: rows * gpr)
    beta = alpha
    gmin = [Float](repeating: 0, count: rows * gpr)
    gmax = gmin
    scale = gmin
    zero = gmin
    clamped = [Bool](repeating: false, count: rows * gpr)
    for r in 0..<rows {
      w.withRow(r) { wr in
        for g in 0..<gpr {
          var lo: Float = 0, hi: Float = 0
          for c in (g * groupSize)..<min(cols, (g + 1) * groupSize) {
            let x = wr[c]
            lo = x < lo ? x : lo
            hi = x > hi ? x : hi
          }
          gmin[r * gpr + g] = lo
          gmax[r * gpr + g] = hi
        }
      }
    }
    w.releasePages()
  }

  /// Where group `g` of row `r` starts in the row-major weights, and its length (the last
  /// group of a row is short when `groupSize` does not divide `cols`).
  @inline(__always)
  private func groupSpan(_ r: Int, _ g: Int) -> (base: Int, count: Int) {
    let c0 = g * groupSize
    return (r * cols + c0, min(cols, c0 + groupSize) - c0)
  }

  private var maxqSym: Float { Float(1 << (scheme.bits - 1)) }
  private var maxqAsym: Float { Float((1 << scheme.bits) - 1) }

  /// Writes the fake-quantized weights `w_qdq` into `out` (`rows · cols` floats), clamping α/β
  /// to [0, 1] in place first (auto-round clamps before every use).
  package func qdq(into out: UnsafeMutablePointer<Float>) {
    updateScales()
    if let frozen {
      dequantize(frozen, into: out)
      return
    }
    let magic: Float = 12_582_912
    let (lo, hi): (Float, Float) = scheme.symmetric ? (-maxqSym, maxqSym - 1) : (0, maxqAsym)
    for r in 0..<rows {
      w.withRow(r) { wr in
        for g in 0..<groupsPerRow {
          let gi = r * groupsPerRow + g
          let s = scale[gi], zp = zero[gi]
          let (base, n) = groupSpan(r, g)
          v.withUnsafeBufferPointer { vb in
            // One entry check per group; the loop then indexes plain pointers, so it carries
            // no per-element overflow checks and vectorizes (release builds keep checks).
            precondition(
              base - r * cols + n <= cols && base + n <= vb.count, "group inside the weights")
            let wp = wr + (base - r * cols), vp = vb.baseAddress! + base, op = out + base  // safe: checked above
            for k in 0..<n {
              var x = wp[k] / s + vp[k]
              x = x < -4_194_304 ? -4_194_304 : (x > 4_194_304 ? 4_194_304 : x)
              var q = (x + magic) - magic + zp
              q = q < lo ? lo : (q > hi ? hi : q)
              op[k] = s * (q - zp)
            }
          }
        }
      }
    }
    w.releasePages()
  }

  /// Clamps α/β to [0, 1] and sets every group's scale, zero point and clamp flag from them
  /// (the part of `qdq` that `finalize` needs, without writing `w_qdq`).
  private func updateScales() {
    let st = scheme.scaleType
    let thresh = IntQuantizer.scaleThreshold(st)
    let magic: Float = 12_582_912
    for i in alpha.indices {
      alpha[i] = min(max(alpha[i], 0), 1)
      beta[i] = min(max(beta[i], 0), 1)
    }
    for gi in 0..<(rows * groupsPerRow) {
      var s: Float, zp: Float = 0
      var isClamped = false
      if scheme.symmetric {
        let maxq = maxqSym
        let wminAbs = -(gmin[gi] * beta[gi])
        let wmax = gmax[gi] * alpha[gi]
        let maxv = wmax < wminAbs ? wminAbs : -wmax
        s = roundFloat(maxv / maxq, to: st)
        if s < 0 {
          if s > -thresh { s = -thresh; isClamped = true }
        } else if s < thresh {
          s = thresh; isClamped = true
        }
      } else {
        let maxq = maxqAsym
        let wmin = gmin[gi] * beta[gi], wmax = gmax[gi] * alpha[gi]
        s = roundFloat((wmax - wmin) / maxq, to: st)
        if s < thresh { s = thresh; isClamped = true }
        zp = (-wmin / s + magic) - magic
      }
      scale[gi] = s
      zero[gi] = zp
      clamped[gi] = isClamped
    }
  }

  /// Gradients of V, α, β from `dw = ∂L/∂w_qdq` (straight-through rounding; clamps pass the
  /// gradient only inside their range, `max(hi, lo)` only to the larger side — half each on a
  /// tie — as torch's autograd does for the §3 formulas). Uses the scales of the last `qdq`.
  package func backward(
    dw: UnsafePointer<Float>, dv: UnsafeMutablePointer<Float>, dAlpha: UnsafeMutablePointer<Float>,
    dBeta: UnsafeMutablePointer<Float>
  ) {
    let magic: Float = 12_582_912
    for r in 0..<rows {
      w.withRow(r) { wr in
        for g in 0..<groupsPerRow {
          let gi = r * groupsPerRow + g
          let s = scale[gi], zp = zero[gi]
          let (lo, hi): (Float, Float) = scheme.symmetric ? (-maxqSym, maxqSym - 1) : (0, maxqAsym)
          var ds: Float = 0, dzp: Float = 0
          let (base, n) = groupSpan(r, g)
          do {
            v.withUnsafeBufferPointer { vb in
              // As in `qdq`: checked once per group, then plain pointers.
              precondition(
                base - r * cols + n <= cols && base + n <= vb.count, "group inside the weights")
              let wp = wr + (base - r * cols), vp = vb.baseAddress! + base  // safe: checked above
              let gp = dw + base, dvp = dv + base
              for k in 0..<n {
                let u = wp[k] / s
                var x = u + vp[k]
                x = x < -4_194_304 ? -4_194_304 : (x > 4_194_304 ? 4_194_304 : x)
                let pre = (x + magic) - magic + zp
                let inside: Float = (pre >= lo && pre <= hi) ? 1 : 0
                let q = pre < lo ? lo : (pre > hi ? hi : pre)
                let g = gp[k]  // read before `dvp[k]` is written: `dv` may be `dw` itself
                dvp[k] = g * s * inside
                ds += g * (q - zp - inside * u)
                dzp += g * s * (inside - 1)
              }
            }
          }
          dAlpha[gi] = 0
          dBeta[gi] = 0
          if scheme.symmetric {
            guard !clamped[gi] else { continue }
            let dmaxv = ds / maxqSym
            let wminAbs = -(gmin[gi] * beta[gi]), wmax = gmax[gi] * alpha[gi]
            let sign: Float = wmax < wminAbs ? 1 : -1
            let share: (Float, Float) =
              wmax > wminAbs ? (1, 0) : (wmax < wminAbs ? (0, 1) : (0.5, 0.5))
            dAlpha[gi] = sign * dmaxv * share.0 * gmax[gi]
            dBeta[gi] = sign * dmaxv * share.1 * (-gmin[gi])
          } else {
            let wmin = gmin[gi] * beta[gi]
            // zp = round_ste(−wmin / s): ∂zp/∂wmin = −1/s, ∂zp/∂s = wmin/s².
            var dsTotal = ds + dzp * wmin / (s * s)
            if clamped[gi] { dsTotal = 0 }
            let dwmin = -dzp / s - dsTotal / maxqAsym
            let dwmax = dsTotal / maxqAsym
            dAlpha[gi] = dwmax * gmax[gi]
            dBeta[gi] = dwmin * gmin[gi]
          }
        }
      }
    }
    w.releasePages()
  }

  /// The codes, scales (and zero points) of the current parameters, laid out exactly as
  /// `rtn` (IntQuantizer) stores them: sym codes in [−2^(b−1), 2^(b−1)−1] with signed scales;
  /// asym codes and zero points shifted by −2^(b−1).
  package func finalize() -> QuantizedTensor {
    updateScales()
    var codes = [Int8](repeating: 0, count: rows * cols)
    codes.withUnsafeMutableBufferPointer { c in
      // safe: rows · cols codes
      if let frozen {
        frozen.load(into: c.baseAddress!, count: rows * cols, at: 0)
      } else {
        for r in 0..<rows { rowCodes(r, into: c.baseAddress! + r * cols) }
        w.releasePages()
      }
    }
    let half = Float(1 << (scheme.bits - 1))
    let shape = [rows, groupsPerRow]
    let zeros: TensorData? =
      scheme.symmetric
      ? nil : TensorData(int8: zero.map { Int8(min(max($0 - half, -128), 127)) }, shape: shape)
    return QuantizedTensor(
      scheme: .int(scheme), codes: TensorData(int8: codes, shape: [rows, cols]),
      scale: TensorData(floats: scale, shape: shape, as: scheme.scaleType), zeroPoint: zeros)
  }

  /// Row `r`'s codes from V and the scales of the last `updateScales`, as `finalize` stores
  /// them, into `out` (`cols` codes): the rounding of `qdq`, operation for operation.
  private func rowCodes(_ r: Int, into out: UnsafeMutablePointer<Int8>) {
    let half = Float(1 << (scheme.bits - 1))
    let magic: Float = 12_582_912
    let (lo, hi): (Float, Float) = scheme.symmetric ? (-maxqSym, maxqSym - 1) : (0, maxqAsym)
    w.withRow(r) { wr in
      for g in 0..<groupsPerRow {
        let gi = r * groupsPerRow + g
        let s = scale[gi], zp = zero[gi]
        for c in (g * groupSize)..<min(cols, (g + 1) * groupSize) {
          var x = wr[c] / s + v[r * cols + c]
          x = x < -4_194_304 ? -4_194_304 : (x > 4_194_304 ? 4_194_304 : x)
          var q = (x + magic) - magic + zp
          q = q < lo ? lo : (q > hi ? hi : q)
          out[c] = Int8(truncatingIfNeeded: Int32(scheme.symmetric ? q : q - half))
        }
      }
    }
  }

  /// `w_qdq = s · (q − zp)` from stored codes (`q` is the code, plus 2^(b−1) when asymmetric):
  /// the values `qdq` computed from V when the codes were taken, bit for bit.
  private func dequantize(_ codes: PackedCodes, into out: UnsafeMutablePointer<Float>) {
    let half: Float = scheme.symmetric ? 0 : Float(1 << (scheme.bits - 1))
    let row = UnsafeMutablePointer<Int8>.allocate(capacity: max(cols, 1))
    defer { row.deallocate() }
    for r in 0..<rows {
      codes.load(into: row, count: cols, at: r * cols)
      for g in 0..<groupsPerRow {
        let gi = r * groupsPerRow + g
        let s = scale[gi], zp = zero[gi]
        for c in (g * groupSize)..<min(cols, (g + 1) * groupSize) {
          out[r * cols + c] = s * ((Float(row[c]) + half) - zp)
        }
      }
    }
  }

  /// One SignSGD step: `p ← p − lr · sign(g)` (sign(0) = 0).
  package func step(
    dv: UnsafePointer<Float>, dAlpha: UnsafePointer<Float>, dBeta: UnsafePointer<Float>, lr: Float,
    minmaxLR: Float, tuneMinmax: Bool
  ) {
    v.withUnsafeMutableBufferPointer { p in
      for i in 0..<p.count { p[i] -= lr * signum(dv[i]) }
    }
    guard tuneMinmax else { return }
    for i in alpha.indices {
      alpha[i] -= minmaxLR * signum(dAlpha[i])
      beta[i] -= minmaxLR * signum(dBeta[i])
    }
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
    updateScales()  // the scales of the last qdq: α and β have not moved since
    // Rewritten in place: `best` is cleared first, so `b` holds the only reference.
    let nibbles = scheme.bits <= 4 && cols % 2 == 0
    var b = best ?? (PackedCodes(count: rows * cols, nibbles: nibbles), [], [])
    best = nil
    let row = UnsafeMutablePointer<Int8>.allocate(capacity: max(cols, 1))
    defer { row.deallocate() }
    for r in 0..<rows {
      rowCodes(r, into: row)
      b.codes.store(row, count: cols, at: r * cols)
    }
    w.releasePages()
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

@inline(__always)
func signum(_ x: Float) -> Float { x > 0 ? 1 : (x < 0 ? -1 : 0) }
