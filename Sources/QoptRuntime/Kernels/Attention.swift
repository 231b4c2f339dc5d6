import CQoptKernels
import Dispatch

extension Kernels {
  /// Causal grouped-query attention (llama-forward.md §5) with sgemm.
  ///
  /// `q[T, H·d]`, `k, v[T, Hkv·d]` → `out[T, H·d]`; query head n reads kv head n / (H/Hkv).
  /// The H/Hkv query heads that share a kv head are gathered into one `[T·rep, d]` matrix
  /// (rows ordered by token, then head), so each kv group costs one sgemm per row block
  /// instead of one per head. Row blocks of `block` tokens are scored only against the keys
  /// they may see: at T = 512 and 64-token blocks the products cover 56 % of the full T×T
  /// (the causal half plus the diagonal blocks' upper halves), against 62.5 % with 128.
  /// Softmax is fused (max, exp, Σ in one C pass per row, masked tail zeroed) and left
  /// unnormalized; each output row is scaled by 1/Σ after the product with V.
  ///
  /// With `workers > 1` the (group, row block) tasks run on `workers` threads, each with
  /// single-threaded sgemm (these products are too small to split well inside OpenBLAS); the
  /// OpenBLAS thread count is restored afterwards. Every task writes disjoint rows, so the result
  /// does not depend on scheduling.
  /// O(H·T²·d) flops; scratch: `2·T·H·d + workers·block·rep·(T + 1)` floats.
  public static func attention(
    q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, tokens t: Int,
    heads: Int, kvHeads: Int, headDim d: Int, into out: UnsafeMutablePointer<Float>, block: Int = 64,
    workers: Int = 1
  ) {
    guard t > 0 else { return }
    let rep = heads / kvHeads
    let qs = heads * d, ks = kvHeads * d
    let scale = 1 / Float(d).squareRoot()
    let bs = min(block, t)
    let blocks = (t + bs - 1) / bs
    let groupFloats = t * rep * d
    let tasks = kvHeads * blocks
    let parallel = workers > 1 && tasks > 1
    let scoreFloats = bs * rep * t
    let slots = parallel ? min(workers, tasks) : 1
    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 2 * kvHeads * groupFloats + slots * (scoreFloats + bs * rep))
    defer { scratch.deallocate() }
    let qgAll = scratch, ogAll = scratch + kvHeads * groupFloats, scores = scratch + 2 * kvHeads * groupFloats
    // Gather: row (token p, head j) of group g = q[p, (g·rep + j)·d ..< +d]; rep·d floats per token.
    for g in 0..<kvHeads {
      for p in 0..<t { (qgAll + g * groupFloats + p * rep * d).update(from: q + p * qs + g * rep * d, count: rep * d) }
    }
    let qgAddr = Int(bitPattern: qgAll), ogAddr = Int(bitPattern: ogAll), scAddr = Int(bitPattern: scores)
    let invAddr = Int(bitPattern: scores + slots * scoreFloats)
    let kAddr = Int(bitPattern: k), vAddr = Int(bitPattern: v)
    // One (group, row block) task. Addresses travel as integers so the closure is Sendable.
    let task = { @Sendable (index: Int, slot: Int) in
      let g = index / blocks, b = index % blocks
      // safe: the addresses come from live buffers above; the closure runs before they are freed.
      let qg = UnsafeMutablePointer<Float>(bitPattern: qgAddr)! + g * groupFloats
      let og = UnsafeMutablePointer<Float>(bitPattern: ogAddr)! + g * groupFloats
      let s = UnsafeMutablePointer<Float>(bitPattern: scAddr)! + slot * scoreFloats
      let kp = UnsafePointer<Float>(bitPattern: kAddr)!, vp = UnsafePointer<Float>(bitPattern: vAddr)!
      let r0 = b * bs, r1 = min(t, r0 + bs)
      let m = (r1 - r0) * rep
      // S[m, r1] = Qg[r0·rep ..< r1·rep] · K[0..<r1, g]ᵀ · scale
      BLAS.sgemm(transB: true, m: m, n: r1, k: d, alpha: scale, a: qg + r0 * rep * d, lda: d,
                 b: kp + g * d, ldb: ks, c: s, ldc: r1)
      // Unnormalized probabilities; each row's 1/Σ scales its output row after the product
      // (d multiplies per row instead of r1). The masked tail is zeroed.
      let inv = UnsafeMutablePointer<Float>(bitPattern: invAddr)! + slot * bs * rep
      for i in 0..<m {
        inv[i] = FastMath.softmaxNumerator(s + i * r1, valid: r0 + i / rep + 1, count: r1)
      }
      // Og[r0·rep ..< r1·rep] = P[m, r1] · V[0..<r1, g], then row i · inv[i].
      let o = og + r0 * rep * d
      BLAS.sgemm(transB: false, m: m, n: d, k: r1, a: s, lda: r1, b: vp + g * d, ldb: ks, c: o, ldc: d)
      for i in 0..<m { FastMath.scale(o + i * d, count: d, by: inv[i]) }
    }
    if parallel {
      let saved = BLAS.threads
      BLAS.setThreads(1)
      // Each worker takes the next task from a shared counter, larger blocks first (they see
      // the most keys), and reuses its own score tile, which stays in its core's L2.
      let counter = UnsafeMutablePointer<Int>.allocate(capacity: 1)
      counter.initialize(to: 0)
      defer { counter.deallocate() }
      let counterAddr = Int(bitPattern: counter)
      DispatchQueue.concurrentPerform(iterations: slots) { slot in
        // safe: the counter outlives concurrentPerform.
        let c = UnsafeMutablePointer<Int>(bitPattern: counterAddr)!
        while true {
          let i = qopt_fetch_increment(c)
          guard i < tasks else { break }
          task((i % kvHeads) * blocks + (blocks - 1 - i / kvHeads), slot)
        }
      }
      BLAS.setThreads(saved)
    } else {
      for i in 0..<tasks { task(i, 0) }
    }
    // Scatter back: the group's heads are contiguous in each output row.
    for g in 0..<kvHeads {
      for p in 0..<t { (out + p * qs + g * rep * d).update(from: ogAll + g * groupFloats + p * rep * d, count: rep * d) }
    }
  }
}
