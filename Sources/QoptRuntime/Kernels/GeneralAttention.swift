#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The attention variants the fast kernel (`attention`) does not cover: a score scale other
/// than 1/√d (Gemma's `query_pre_attn_scalar`), a sliding window (query i sees keys
/// `i−W+1 … i`, transformers' `kv_idx > q_idx − sliding_window`), and logit soft-capping
/// (`s → c·tanh(s/c)`, after scaling, before the mask, as Gemma 2/3's eager attention).
public struct AttentionVariant: Hashable, Sendable {
  public var scale: Float
  public var window: Int?
  public var softcap: Float?
  public init(scale: Float, window: Int?, softcap: Float?) {
    self.scale = scale
    self.window = window
    self.softcap = softcap
  }
}

extension Kernels {
  /// Causal GQA attention with `variant`, one sequence of `t` tokens (layouts as `attention`).
  /// A plain per-row loop: O(H·T·min(T, W)·d); scratch T floats.
  public static func attention(
    q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, tokens t: Int,
    heads: Int, kvHeads: Int, headDim d: Int, variant: AttentionVariant,
    into out: UnsafeMutablePointer<Float>
  ) {
    let rep = heads / kvHeads, qs = heads * d, ks = kvHeads * d
    var p = [Float](repeating: 0, count: t)
    for h in 0..<heads {
      let g = h / rep
      for i in 0..<t {
        let lo = variant.window.map { max(0, i - $0 + 1) } ?? 0
        let qi = q + i * qs + h * d
        scores(qi, k + g * d, ks, d, lo, i, variant, &p)
        let o = out + i * qs + h * d
        for c in 0..<d { o[c] = 0 }
        for j in lo...i {
          let vj = v + j * ks + g * d
          for c in 0..<d { o[c] += p[j] * vj[c] }
        }
      }
    }
  }

  /// The softmax probabilities `p[lo...i]` of query row `qi` against keys `lo...i`.
  private static func scores(
    _ qi: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ ks: Int, _ d: Int, _ lo: Int, _ i: Int,
    _ variant: AttentionVariant, _ p: inout [Float]
  ) {
    var m = -Float.infinity
    for j in lo...i {
      let kj = k + j * ks
      var s: Float = 0
      for c in 0..<d { s += qi[c] * kj[c] }
      s *= variant.scale
      if let cap = variant.softcap { s = cap * tanhf(s / cap) }
      p[j] = s
      m = max(m, s)
    }
    var sum: Float = 0
    for j in lo...i {
      p[j] = expf(p[j] - m)
      sum += p[j]
    }
    for j in lo...i { p[j] /= sum }
  }

  /// Backward of the variant attention: P recomputed per row, `dV_j += p_j·dO`,
  /// `dS_j = p_j(dO·V_j − Σ p·(dO·V))`, through the soft cap (`× 1 − (s/c)²`), then
  /// `dQ += scale·Σ dS_j K_j`, `dK_j += scale·dS_j Q`. Adds into dq, dk, dv. O(H·T·min(T, W)·d).
  public static func attentionBackward(
    q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, tokens t: Int,
    heads: Int, kvHeads: Int, headDim d: Int, variant: AttentionVariant, dOut: UnsafePointer<Float>,
    dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
    dv: UnsafeMutablePointer<Float>
  ) {
    let rep = heads / kvHeads, qs = heads * d, ks = kvHeads * d
    var p = [Float](repeating: 0, count: t), dp = p
    for h in 0..<heads {
      let g = h / rep
      for i in 0..<t {
        let lo = variant.window.map { max(0, i - $0 + 1) } ?? 0
        let qi = q + i * qs + h * d, go = dOut + i * qs + h * d
        scores(qi, k + g * d, ks, d, lo, i, variant, &p)
        var dot: Float = 0
        for j in lo...i {
          let vj = v + j * ks + g * d, dvj = dv + j * ks + g * d
          var s: Float = 0
          for c in 0..<d {
            s += go[c] * vj[c]
            dvj[c] += p[j] * go[c]
          }
          dp[j] = s
          dot += p[j] * s
        }
        let dqi = dq + i * qs + h * d
        for j in lo...i {
          var ds = p[j] * (dp[j] - dot)
          if let cap = variant.softcap {
            // Recompute the capped score: s = c·tanh(r/c), ∂s/∂r = 1 − (s/c)².
            let kj = k + j * ks + g * d
            var r: Float = 0
            for c in 0..<d { r += qi[c] * kj[c] }
            let th = tanhf(r * variant.scale / cap)
            ds *= 1 - th * th
          }
          ds *= variant.scale
          let kj = k + j * ks + g * d, dkj = dk + j * ks + g * d
          for c in 0..<d {
            dqi[c] += ds * kj[c]
            dkj[c] += ds * qi[c]
          }
        }
      }
    }
  }
}
