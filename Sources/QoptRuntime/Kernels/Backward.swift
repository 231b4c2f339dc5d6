import CQoptKernels

/// Reverse-mode twins of the forward kernels: each takes the forward inputs it needs and the
/// gradient of the loss with respect to the forward output (`dy`), and **adds** the gradients
/// with respect to its inputs into `dx…` (a value used twice receives both contributions).
///
/// All are pure functions of explicit buffers; `Tests/QoptRuntimeTests/BackwardTests.swift`
/// checks each against central finite differences of a Float64 reference forward.
extension Kernels {
  /// RMSNorm backward (weight fixed): with `r = 1/sqrt(mean(x²) + ε)` and `g = dy ∘ w`,
  /// `dx = r · g − x · r³ · (g · x) / D`. O(T·D).
  public static func rmsNormBackward(
    _ x: UnsafePointer<Float>, rows t: Int, columns d: Int, weight w: UnsafePointer<Float>,
    eps: Float,
    dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>
  ) {
    for r in 0..<t {
      let xr = x + r * d, gr = dy + r * d, dr = dx + r * d
      var ss: Float = 0, gx: Float = 0
      for j in 0..<d {
        ss += xr[j] * xr[j]
        gx += gr[j] * w[j] * xr[j]
      }
      let inv = 1 / (ss / Float(d) + eps).squareRoot()
      let c = inv * inv * inv * gx / Float(d)
      for j in 0..<d { dr[j] += inv * gr[j] * w[j] - c * xr[j] }
    }
  }

  /// Linear backward with respect to the input: `dx[T, K] += dy[T, N] · w[N, K]`. O(T·N·K).
  public static func linearBackwardInput(
    dy: UnsafePointer<Float>, rows t: Int, outFeatures n: Int, weight w: UnsafePointer<Float>,
    inFeatures k: Int,
    dx: UnsafeMutablePointer<Float>
  ) {
    BLAS.sgemm(transB: false, m: t, n: k, k: n, a: dy, lda: n, b: w, ldb: k, beta: 1, c: dx, ldc: k)
  }

  /// Linear backward with respect to the weight: `dw[N, K] = dy[T, N]ᵀ · x[T, K]` (overwrites,
  /// since a weight has exactly one use in a block). O(T·N·K).
  public static func linearBackwardWeight(
    dy: UnsafePointer<Float>, rows t: Int, outFeatures n: Int, input x: UnsafePointer<Float>,
    inFeatures k: Int,
    dw: UnsafeMutablePointer<Float>
  ) {
    BLAS.sgemmTransA(m: n, n: k, k: t, a: dy, lda: n, b: x, ldb: k, c: dw, ldc: k)
  }

  /// RoPE backward: the transpose of the rotation, `dx[i] += dy[i]·c + dy[i+h]·s`,
  /// `dx[i+h] += dy[i+h]·c − dy[i]·s`, at positions 0…T−1. O(T·heads·d).
  /// `headStride` as in `rope`: the pass-through part of each head gets `dx += dy`.
  public static func ropeBackward(
    dy: UnsafePointer<Float>, rows t: Int, heads: Int, table: RopeTable,
    dx: UnsafeMutablePointer<Float>,
    headStride: Int? = nil
  ) {
    precondition(
      t <= table.positions,
      "rope backward: \(t) rows but the table has \(table.positions) positions")
    let r = table.headDim, half = r / 2
    let d = headStride ?? r
    if d > r {
      for p in 0..<t {
        for h in 0..<heads {
          let o = p * heads * d + h * d
          for j in r..<d { dx[o + j] += dy[o + j] }
        }
      }
    }
    table.cos.withUnsafeBufferPointer { cb in
      table.sin.withUnsafeBufferPointer { sb in
        for p in 0..<t {
          let c = cb.baseAddress! + p * half  // safe: tables are non-empty for d ≥ 2
          let s = sb.baseAddress! + p * half  // safe: as above
          for h in 0..<heads {
            let gi = dy + p * heads * d + h * d
            let xi = dx + p * heads * d + h * d
            for i in 0..<half {
              let a = gi[i], b = gi[i + half]
              xi[i] += a * c[i] + b * s[i]
              xi[i + half] += b * c[i] - a * s[i]
            }
          }
        }
      }
    }
  }

  /// Causal GQA attention backward for one sequence of `t` tokens (layouts as `attention`).
  ///
  /// As in the forward, the `rep = H/Hkv` query heads sharing a kv head are gathered into one
  /// `[T·rep, d]` matrix (rows by token, then head), so each kv group and block of `block`
  /// query tokens (which see keys `0..<r1` only) costs one product of `rep·block` rows per step:
  /// `P` is recomputed, then `dV += Pᵀ·dO`, `dP = dO·Vᵀ`, `dS = P ∘ (dP − rowsum(dP ∘ P))`,
  /// `dQ += scale·dS·K`, `dK += scale·dSᵀ·Q`. 64-token blocks compute 56 % of the full T×T
  /// products at T = 512.
  /// O(H·T²·d); scratch `3·T·rep·d + 2·rep·block·T` floats.
  public static func attentionBackward(
    q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, tokens t: Int,
    heads: Int, kvHeads: Int, headDim d: Int, dOut: UnsafePointer<Float>,
    dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
    dv: UnsafeMutablePointer<Float>, block: Int = 64
  ) {
    guard t > 0 else { return }
    let rep = heads / kvHeads
    let qs = heads * d, ks = kvHeads * d
    let scale = 1 / Float(d).squareRoot()
    let bs = min(block, t)
    let groupFloats = t * rep * d, tileFloats = bs * rep * t
    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 3 * groupFloats + 2 * tileFloats)
    defer { scratch.deallocate() }
    let qg = scratch, og = scratch + groupFloats, dqg = scratch + 2 * groupFloats
    let p = scratch + 3 * groupFloats, dp = p + tileFloats
    let w = rep * d
    for g in 0..<kvHeads {
      // Gather the group's query rows and output gradients: rep·d contiguous floats per token.
      for r in 0..<t {
        (qg + r * w).update(from: q + r * qs + g * w, count: w)
        (og + r * w).update(from: dOut + r * qs + g * w, count: w)
      }
      let kg = k + g * d, vg = v + g * d
      var r0 = 0
      while r0 < t {
        let r1 = min(t, r0 + bs)
        let m = (r1 - r0) * rep
        let qb = qg + r0 * w, ob = og + r0 * w
        // P[m, r1] = softmax(Qg[rows] · K[0..<r1]ᵀ · scale), causal.
        BLAS.sgemm(
          transB: true, m: m, n: r1, k: d, alpha: scale, a: qb, lda: d, b: kg, ldb: ks, c: p,
          ldc: r1)
        for i in 0..<m {
          let valid = r0 + i / rep + 1
          let inv = FastMath.softmaxNumerator(p + i * r1, valid: valid, count: r1)
          FastMath.scale(p + i * r1, count: valid, by: inv)
        }
        // dV[0..<r1] += Pᵀ · dOg[rows]
        BLAS.sgemmTransA(
          m: r1, n: d, k: m, a: p, lda: r1, b: ob, ldb: d, beta: 1, c: dv + g * d, ldc: ks)
        // dP = dOg[rows] · V[0..<r1]ᵀ, then dS in place.
        BLAS.sgemm(transB: true, m: m, n: r1, k: d, a: ob, lda: d, b: vg, ldb: ks, c: dp, ldc: r1)
        for i in 0..<m {
          FastMath.softmaxGradient(p + i * r1, dp + i * r1, valid: r0 + i / rep + 1, count: r1)
        }
        // dQg[rows] = scale · dS · K[0..<r1] (each row block written once);  dK[0..<r1] += scale · dSᵀ · Qg[rows]
        BLAS.sgemm(
          transB: false, m: m, n: d, k: r1, alpha: scale, a: dp, lda: r1, b: kg, ldb: ks,
          c: dqg + r0 * w, ldc: d)
        BLAS.sgemmTransA(
          m: r1, n: d, k: m, alpha: scale, a: dp, lda: r1, b: qb, ldb: d, beta: 1, c: dk + g * d,
          ldc: ks)
        r0 = r1
      }
      // Scatter-add the group's query gradients.
      for r in 0..<t {
        let src = dqg + r * w, dst = dq + r * qs + g * w
        for j in 0..<w { dst[j] += src[j] }
      }
    }
  }

  /// SiLU backward: `dx += dy · σ(x) · (1 + x · (1 − σ(x)))`. O(n).
  public static func siluBackward(
    _ x: UnsafePointer<Float>, count n: Int, dy: UnsafePointer<Float>,
    dx: UnsafeMutablePointer<Float>
  ) {
    qopt_silu_backward(x, dy, dx, n)
  }

  /// Product backward: `da += dy ∘ b`, `db += dy ∘ a`. O(n).
  public static func mulBackward(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count n: Int, dy: UnsafePointer<Float>,
    da: UnsafeMutablePointer<Float>, db: UnsafeMutablePointer<Float>
  ) {
    for i in 0..<n {
      da[i] += dy[i] * b[i]
      db[i] += dy[i] * a[i]
    }
  }

  /// Sum backward: `da += dy`, `db += dy`. O(n).
  public static func addBackward(
    count n: Int, dy: UnsafePointer<Float>, da: UnsafeMutablePointer<Float>,
    db: UnsafeMutablePointer<Float>
  ) {
    for i in 0..<n {
      da[i] += dy[i]
      db[i] += dy[i]
    }
  }
}
