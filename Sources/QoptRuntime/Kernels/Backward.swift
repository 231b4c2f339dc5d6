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
    _ x: UnsafePointer<Float>, rows t: Int, columns d: Int, weight w: UnsafePointer<Float>, eps: Float,
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
    dy: UnsafePointer<Float>, rows t: Int, outFeatures n: Int, weight w: UnsafePointer<Float>, inFeatures k: Int,
    dx: UnsafeMutablePointer<Float>
  ) {
    BLAS.sgemm(transB: false, m: t, n: k, k: n, a: dy, lda: n, b: w, ldb: k, beta: 1, c: dx, ldc: k)
  }

  /// Linear backward with respect to the weight: `dw[N, K] = dy[T, N]ᵀ · x[T, K]` (overwrites,
  /// since a weight has exactly one use in a block). O(T·N·K).
  public static func linearBackwardWeight(
    dy: UnsafePointer<Float>, rows t: Int, outFeatures n: Int, input x: UnsafePointer<Float>, inFeatures k: Int,
    dw: UnsafeMutablePointer<Float>
  ) {
    BLAS.sgemmTransA(m: n, n: k, k: t, a: dy, lda: n, b: x, ldb: k, c: dw, ldc: k)
  }

  /// RoPE backward: the transpose of the rotation, `dx[i] += dy[i]·c + dy[i+h]·s`,
  /// `dx[i+h] += dy[i+h]·c − dy[i]·s`, at positions 0…T−1. O(T·heads·d).
  public static func ropeBackward(
    dy: UnsafePointer<Float>, rows t: Int, heads: Int, table: RopeTable, dx: UnsafeMutablePointer<Float>
  ) {
    let d = table.headDim, half = d / 2
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
  /// Per query head and block of `block` query rows (which see keys `0..<r1` only), the
  /// probabilities `P` are recomputed, then `dV += Pᵀ·dO`, `dP = dO·Vᵀ`,
  /// `dS = P ∘ (dP − rowsum(dP ∘ P))`, `dQ += scale·dS·K`, `dK += scale·dSᵀ·Q`; heads sharing a
  /// kv head accumulate into it. Blocking skips ~40 % of the products at T = 512.
  /// O(H·T²·d); scratch `2 · block · t` floats.
  public static func attentionBackward(
    q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, tokens t: Int,
    heads: Int, kvHeads: Int, headDim d: Int, dOut: UnsafePointer<Float>,
    dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>, block: Int = 128
  ) {
    let rep = heads / kvHeads
    let qs = heads * d, ks = kvHeads * d
    let scale = 1 / Float(d).squareRoot()
    let bs = min(block, t)
    var pBuf = [Float](repeating: 0, count: bs * t)
    var dpBuf = [Float](repeating: 0, count: bs * t)
    pBuf.withUnsafeMutableBufferPointer { pb in
      dpBuf.withUnsafeMutableBufferPointer { db in
        let p = pb.baseAddress!, dp = db.baseAddress!  // safe: t > 0 (callers skip empty inputs)
        for h in 0..<heads {
          let kv = h / rep
          let qh = q + h * d, kh = k + kv * d, vh = v + kv * d, oh = dOut + h * d
          var r0 = 0
          while r0 < t {
            let r1 = min(t, r0 + bs)
            let m = r1 - r0
            // P[m, r1] = softmax(Q[r0..<r1] · K[0..<r1]ᵀ · scale), causal.
            BLAS.sgemm(transB: true, m: m, n: r1, k: d, alpha: scale, a: qh + r0 * qs, lda: qs, b: kh, ldb: ks, c: p, ldc: r1)
            for i in 0..<m {
              let row = p + i * r1
              let valid = r0 + i + 1
              let mx = FastMath.max(row, count: valid)
              let sum = FastMath.expShifted(row, row, count: valid, shift: mx)
              let inv = 1 / sum
              for j in 0..<valid { row[j] *= inv }
              for j in valid..<r1 { row[j] = 0 }
            }
            // dV[0..<r1] += Pᵀ · dO[r0..<r1]
            BLAS.sgemmTransA(m: r1, n: d, k: m, a: p, lda: r1, b: oh + r0 * qs, ldb: qs, beta: 1, c: dv + kv * d, ldc: ks)
            // dP = dO[r0..<r1] · V[0..<r1]ᵀ
            BLAS.sgemm(transB: true, m: m, n: r1, k: d, a: oh + r0 * qs, lda: qs, b: vh, ldb: ks, c: dp, ldc: r1)
            for i in 0..<m {
              let pr = p + i * r1, dr = dp + i * r1
              let valid = r0 + i + 1
              var dot: Float = 0
              for j in 0..<valid { dot += pr[j] * dr[j] }
              for j in 0..<valid { dr[j] = pr[j] * (dr[j] - dot) }
              for j in valid..<r1 { dr[j] = 0 }
            }
            // dQ[r0..<r1] += scale · dS · K[0..<r1];  dK[0..<r1] += scale · dSᵀ · Q[r0..<r1]
            BLAS.sgemm(transB: false, m: m, n: d, k: r1, alpha: scale, a: dp, lda: r1, b: kh, ldb: ks, beta: 1, c: dq + h * d + r0 * qs, ldc: qs)
            BLAS.sgemmTransA(m: r1, n: d, k: m, alpha: scale, a: dp, lda: r1, b: qh + r0 * qs, ldb: qs, beta: 1, c: dk + kv * d, ldc: ks)
            r0 = r1
          }
        }
      }
    }
  }

  /// SiLU backward: `dx += dy · σ(x) · (1 + x · (1 − σ(x)))`. O(n).
  public static func siluBackward(_ x: UnsafePointer<Float>, count n: Int, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
    for i in 0..<n {
      let s = 1 / (1 + FastMath.exp(-x[i]))
      dx[i] += dy[i] * s * (1 + x[i] * (1 - s))
    }
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
  public static func addBackward(count n: Int, dy: UnsafePointer<Float>, da: UnsafeMutablePointer<Float>, db: UnsafeMutablePointer<Float>) {
    for i in 0..<n {
      da[i] += dy[i]
      db[i] += dy[i]
    }
  }
}
