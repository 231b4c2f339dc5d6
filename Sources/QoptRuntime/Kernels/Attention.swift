extension Kernels {
  /// Causal grouped-query attention (llama-forward.md §5) with sgemm.
  ///
  /// `q[T, H·d]`, `k, v[T, Hkv·d]` → `out[T, H·d]`; query head n reads kv head n / (H/Hkv).
  /// The H/Hkv query heads that share a kv head are gathered into one `[T·rep, d]` matrix
  /// (rows ordered by token, then head), so each kv group costs one sgemm per row block
  /// instead of one per head. Row blocks of `block` tokens are scored only against the keys
  /// they may see, which skips ~40 % of the score work at T = 512.
  /// O(H·T²·d) flops; scratch: `3·T·rep·d + block·rep·T` floats.
  public static func attention(
    q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, tokens t: Int,
    heads: Int, kvHeads: Int, headDim d: Int, into out: UnsafeMutablePointer<Float>, block: Int = 128
  ) {
    guard t > 0 else { return }
    let rep = heads / kvHeads
    let qs = heads * d, ks = kvHeads * d
    let scale = 1 / Float(d).squareRoot()
    let bs = min(block, t)
    let groupFloats = t * rep * d
    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 2 * groupFloats + bs * rep * t)
    defer { scratch.deallocate() }
    let qg = scratch, og = scratch + groupFloats, s = scratch + 2 * groupFloats
    for g in 0..<kvHeads {
      // Gather: row (token p, head j) of qg = q[p, (g·rep + j)·d ..< +d]; rep·d floats per token.
      for p in 0..<t { (qg + p * rep * d).update(from: q + p * qs + g * rep * d, count: rep * d) }
      var r0 = 0
      while r0 < t {
        let r1 = min(t, r0 + bs)
        let m = (r1 - r0) * rep
        // S[m, r1] = Qg[r0·rep ..< r1·rep] · K[0..<r1, g]ᵀ · scale
        BLAS.sgemm(transB: true, m: m, n: r1, k: d, alpha: scale, a: qg + r0 * rep * d, lda: d,
                   b: k + g * d, ldb: ks, c: s, ldc: r1)
        for i in 0..<m {
          let row = s + i * r1
          let valid = r0 + i / rep + 1
          let mx = FastMath.max(row, count: valid)
          let sum = FastMath.expShifted(row, row, count: valid, shift: mx)
          let inv = 1 / sum
          for j in 0..<valid { row[j] *= inv }
          if valid < r1 { (row + valid).update(repeating: 0, count: r1 - valid) }
        }
        // Og[r0·rep ..< r1·rep] = P[m, r1] · V[0..<r1, g]
        BLAS.sgemm(transB: false, m: m, n: d, k: r1, a: s, lda: r1, b: v + g * d, ldb: ks,
                   c: og + r0 * rep * d, ldc: d)
        r0 = r1
      }
      // Scatter back: the group's heads are contiguous in each output row.
      for p in 0..<t { (out + p * qs + g * rep * d).update(from: og + p * rep * d, count: rep * d) }
    }
  }
}
