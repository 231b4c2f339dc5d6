import CQoptKernels
import Dispatch
import QoptRuntime

#if canImport(Glibc)
  import Glibc
#endif

/// `qopt-bench kernels`: the machine's ceilings and the attention kernel against them.
///
/// - fp32 FMA peak: independent full-width fused multiply-add chains (CQoptKernels, no memory
///   traffic) on 1 and 2 threads; the rate no fp32 kernel can beat on this CPU.
/// - sgemm on a large square product (1024³) and on the eval's linear shape (512 × 1536 × 576),
///   as a fraction of that peak.
/// - causal GQA attention at T = 512 with SmolLM2's 9 query / 3 kv heads of 64, counting only
///   the useful (lower-triangle) flops, for each row-block size.
/// Environment: `QOPT_BENCH_THREADS` (default 2).
@Sendable func runKernelsBench() {
  let threads = getenv("QOPT_BENCH_THREADS").flatMap { Int(String(cString: $0)) } ?? 2
  BLAS.setThreads(threads)
  let peak1 = fmaPeak(threads: 1)
  let peakN = fmaPeak(threads: threads)
  let big = sgemmRate(m: 1024, n: 1024, k: 1024, repeats: 10)
  let lin = sgemmRate(m: 512, n: 1536, k: 576, repeats: 40)
  var rows: [[String]] = [
    ["fp32 FMA peak GFLOP/s, 1 thread (\(qopt_kernels_avx2() != 0 ? "AVX2+FMA" : "scalar"))", fmt(peak1, 1), "100.0 %"],
    ["fp32 FMA peak GFLOP/s, \(threads) threads", fmt(peakN, 1), "100.0 %"],
    ["sgemm 1024×1024×1024, \(threads) threads", fmt(big, 1), fmt(100 * big / peakN, 1) + " %"],
    ["sgemm 512×1536×576 (eval gate/up shape), \(threads) threads", fmt(lin, 1), fmt(100 * lin / peakN, 1) + " %"],
  ]
  // Block sizes interleaved round by round, so they see the same load.
  var rates: [Int: Double] = [:]
  for _ in 0..<10 {
    for block in [32, 64, 128] { rates[block] = max(rates[block] ?? 0, attentionRate(block: block, workers: threads, repeats: 3)) }
  }
  var backRates: [Int: Double] = [:]
  for _ in 0..<5 {
    for block in [64, 128] { backRates[block] = max(backRates[block] ?? 0, attentionBackwardRate(block: block, threads: threads, repeats: 2)) }
  }
  for block in [32, 64, 128] {
    let r = rates[block] ?? 0
    rows.append(["causal GQA attention T=512 9/3 heads ×64, row block \(block), \(threads) workers", fmt(r, 1), fmt(100 * r / peakN, 1) + " %"])
  }
  for block in [64, 128] {
    let r = backRates[block] ?? 0
    rows.append(["causal GQA attention backward (as AutoRound runs it: \(threads) sequences at once, 1-thread sgemm), row block \(block)", fmt(r, 1), fmt(100 * r / peakN, 1) + " %"])
  }
  printTable("kernels: fp32 ceilings on this CPU", ["measure", "GFLOP/s", "of FMA peak"], rows)
}

/// GFLOP/s of `qopt_fma_chains` on `threads` threads at once: best of 200 runs of ~5 ms, so
/// that on a shared machine some run gets the cores to itself.
func fmaPeak(threads: Int) -> Double {
  let iterations = 1_500_000
  let flops = Double(iterations) * 10 * 2 * Double(qopt_fma_lanes()) * Double(threads)
  var best = 0.0
  for _ in 0..<200 {
    let s = monotonicSeconds()
    DispatchQueue.concurrentPerform(iterations: threads) { _ in
      if qopt_fma_chains(iterations) == -1 { print("") }  // keeps the result alive
    }
    best = max(best, flops / (monotonicSeconds() - s) / 1e9)
  }
  return best
}

/// GFLOP/s of `C[m, n] = A[m, k] · B[n, k]ᵀ` (best of `repeats`).
func sgemmRate(m: Int, n: Int, k: Int, repeats: Int) -> Double {
  let a = [Float](repeating: 0.01, count: m * k), b = [Float](repeating: 0.02, count: n * k)
  var c = [Float](repeating: 0, count: m * n)
  var best = 0.0
  a.withUnsafeBufferPointer { ap in
    b.withUnsafeBufferPointer { bp in
      c.withUnsafeMutableBufferPointer { cp in
        for _ in 0..<repeats {
          let s = monotonicSeconds()
          // safe: the buffers are non-empty.
          BLAS.sgemm(transB: true, m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: bp.baseAddress!, ldb: k, c: cp.baseAddress!, ldc: n)
          best = max(best, 2 * Double(m * n * k) / (monotonicSeconds() - s) / 1e9)
        }
      }
    }
  }
  return best
}

/// Useful GFLOP/s of `Kernels.attention` at T = 512, 9 heads over 3 kv heads of 64 (best of `repeats`).
func attentionRate(block: Int, workers: Int, repeats: Int) -> Double {
  let t = 512, h = 9, kvh = 3, d = 64
  var seed: UInt32 = 1
  func rnd() -> Float {
    seed = seed &* 1_664_525 &+ 1_013_904_223
    return Float(seed >> 8) / Float(1 << 24) - 0.5
  }
  let q = (0..<(t * h * d)).map { _ in rnd() }, k = (0..<(t * kvh * d)).map { _ in rnd() }, v = (0..<(t * kvh * d)).map { _ in rnd() }
  var o = [Float](repeating: 0, count: t * h * d)
  let flops = 2 * 2 * Double(h * d) * Double(t * (t + 1) / 2)
  var best = 0.0
  q.withUnsafeBufferPointer { qp in
    k.withUnsafeBufferPointer { kp in
      v.withUnsafeBufferPointer { vp in
        o.withUnsafeMutableBufferPointer { op in
          for _ in 0..<repeats {
            let s = monotonicSeconds()
            // safe: the buffers are non-empty.
            Kernels.attention(
              q: qp.baseAddress!, k: kp.baseAddress!, v: vp.baseAddress!, tokens: t, heads: h, kvHeads: kvh, headDim: d,
              into: op.baseAddress!, block: block, workers: workers)
            best = max(best, flops / (monotonicSeconds() - s) / 1e9)
          }
        }
      }
    }
  }
  return best
}

/// Useful GFLOP/s of `Kernels.attentionBackward` (dV, dP, dQ, dK over the lower triangle; the
/// recomputed scores not counted) on `threads` sequences at once with single-threaded sgemm,
/// as the block executor runs it (best of `repeats`).
func attentionBackwardRate(block: Int, threads: Int, repeats: Int) -> Double {
  let t = 512, h = 9, kvh = 3, d = 64
  var seed: UInt32 = 7
  func rnd() -> [Float] {
    (0..<(threads * t * h * d)).map { _ in
      seed = seed &* 1_664_525 &+ 1_013_904_223
      return Float(seed >> 8) / Float(1 << 24) - 0.5
    }
  }
  let q = rnd(), k = rnd(), v = rnd(), g = rnd()
  let dq = UnsafeMutablePointer<Float>.allocate(capacity: q.count), dk = UnsafeMutablePointer<Float>.allocate(capacity: q.count)
  let dv = UnsafeMutablePointer<Float>.allocate(capacity: q.count)
  defer { dq.deallocate(); dk.deallocate(); dv.deallocate() }
  let flops = 4 * 2 * Double(h * d) * Double(t * (t + 1) / 2) * Double(threads)
  let saved = BLAS.threads
  BLAS.setThreads(1)
  defer { BLAS.setThreads(saved) }
  var best = 0.0
  q.withUnsafeBufferPointer { qp in
    k.withUnsafeBufferPointer { kp in
      v.withUnsafeBufferPointer { vp in
        g.withUnsafeBufferPointer { gp in
          // safe: the buffers are non-empty and outlive the loop.
          nonisolated(unsafe) let (qa, ka, va, ga) = (qp.baseAddress!, kp.baseAddress!, vp.baseAddress!, gp.baseAddress!)
          nonisolated(unsafe) let (dqa, dka, dva) = (dq, dk, dv)
          for _ in 0..<repeats {
            let s = monotonicSeconds()
            DispatchQueue.concurrentPerform(iterations: threads) { i in
              let qo = i * t * h * d, ko = i * t * kvh * d
              Kernels.attentionBackward(
                q: qa + qo, k: ka + ko, v: va + ko, tokens: t, heads: h, kvHeads: kvh, headDim: d, dOut: ga + qo,
                dq: dqa + qo, dk: dka + ko, dv: dva + ko, block: block)
            }
            best = max(best, flops / (monotonicSeconds() - s) / 1e9)
          }
        }
      }
    }
  }
  return best
}
