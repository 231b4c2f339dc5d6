#if canImport(Glibc)
  import Glibc
#endif
import QoptRuntime
import QoptTestSupport
import Testing

private func random(_ n: Int, seed: UInt64, scale: Double = 1) -> [Float] {
  var rng = SplitMix64(seed: seed)
  return (0..<n).map { _ in Float(scale * rng.normal()) }
}

private func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
  zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

private func run(_ n: Int, _ body: (UnsafeMutablePointer<Float>) -> Void) -> [Float] {
  var out = [Float](repeating: .nan, count: n)
  out.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
  return out
}

@Suite struct KernelTests {
  @Test func linearWithBiasMatchesNaive() {
    let (t, k, n) = (5, 7, 3)
    let x = random(t * k, seed: 1), w = random(n * k, seed: 2), b = random(n, seed: 3)
    let y = run(t * n) { Kernels.linear(x, rows: t, inFeatures: k, weight: w, outFeatures: n, bias: b, into: $0) }
    var ref = [Float](repeating: 0, count: t * n)
    for r in 0..<t { for j in 0..<n { ref[r * n + j] = Float((0..<k).reduce(0.0) { $0 + Double(x[r * k + $1]) * Double(w[j * k + $1]) }) + b[j] } }
    #expect(maxAbsDiff(y, ref) < 1e-5)
  }

  @Test func rmsNormMatchesNaive() {
    let (t, d) = (3, 37)
    let x = random(t * d, seed: 4), w = random(d, seed: 5)
    let y = run(t * d) { Kernels.rmsNorm(x, rows: t, columns: d, weight: w, eps: 1e-5, into: $0) }
    for r in 0..<t {
      let ms = (0..<d).reduce(0.0) { $0 + Double(x[r * d + $1] * x[r * d + $1]) } / Double(d)
      for j in 0..<d { #expect(abs(Double(y[r * d + j]) - Double(w[j]) * Double(x[r * d + j]) / (ms + 1e-5).squareRoot()) < 1e-5) }
    }
  }

  /// llama-forward.md §9.1: SmolLM2's tables (θ = 100000, d = 64).
  @Test func ropeTableMatchesReference() {
    let t = RopeTable(headDim: 64, theta: 100000, positions: 4)
    #expect(t.invFreq[0] == 1)
    #expect(abs(t.invFreq[1] - 0.69783056) < 1e-7)
    #expect(abs(t.invFreq[2] - 0.48696753) < 1e-7)
    #expect(abs(t.invFreq[31] - 1.4330127e-05) < 1e-11)
    #expect(abs(t.cos[2 * 32 + 0] - -0.41614684) < 1e-7)
    #expect(abs(t.sin[2 * 32 + 1] - 0.98470300) < 1e-6)
  }

  /// A table grown with `covering` equals one built at that size, and its rows far past 4096
  /// are the direct computation `cos/sin(Float(p) · inv_freq)`.
  @Test func ropeTableCoversLongWindows() {
    let small = RopeTable(headDim: 64, theta: 100000, positions: 16)
    #expect(small.covering(8).positions == 16)
    let grown = small.covering(6000)
    let built = RopeTable(headDim: 64, theta: 100000, positions: 6000)
    #expect(grown.positions == 6000 && grown.cos == built.cos && grown.sin == built.sin)
    for p in [4095, 4096, 5000, 5999] {
      for i in [0, 1, 17, 31] {
        let a = Float(p) * built.invFreq[i]
        #expect(grown.cos[p * 32 + i] == cosf(a) && grown.sin[p * 32 + i] == sinf(a), "position \(p), pair \(i)")
      }
    }
  }

  @Test func ropeRotatesHalves() {
    let (t, heads, d) = (4, 2, 8)
    let table = RopeTable(headDim: d, theta: 10000, positions: t)
    let x = random(t * heads * d, seed: 6)
    let y = run(x.count) { Kernels.rope(x, rows: t, heads: heads, table: table, into: $0) }
    for p in 0..<t {
      for h in 0..<heads {
        for i in 0..<(d / 2) {
          let a = Double(p) * Double(table.invFreq[i])
          let base = p * heads * d + h * d
          let x1 = Double(x[base + i]), x2 = Double(x[base + i + d / 2])
          let c: Double = cos(a), s: Double = sin(a)
          let y1 = Double(y[base + i]), y2 = Double(y[base + i + d / 2])
          #expect(abs(y1 - (x1 * c - x2 * s)) < 1e-5)
          #expect(abs(y2 - (x2 * c + x1 * s)) < 1e-5)
        }
      }
    }
  }

  @Test(arguments: [(1, 1), (3, 1), (64, 1), (3, 2), (2, 4)]) func causalGQAAttentionMatchesNaive(block: Int, workers: Int) {
    let (t, h, kvh, d) = (37, 4, 2, 8)  // rows of 16+ keys take the AVX2 softmax body
    let q = random(t * h * d, seed: 7), k = random(t * kvh * d, seed: 8), v = random(t * kvh * d, seed: 9)
    let y = run(t * h * d) { Kernels.attention(q: q, k: k, v: v, tokens: t, heads: h, kvHeads: kvh, headDim: d, into: $0, block: block, workers: workers) }
    var ref = [Float](repeating: 0, count: t * h * d)
    for n in 0..<h {
      let g = n / (h / kvh)
      for i in 0..<t {
        var s = (0...i).map { j in (0..<d).reduce(0.0) { $0 + Double(q[i * h * d + n * d + $1]) * Double(k[j * kvh * d + g * d + $1]) } / Double(d).squareRoot() }
        let m = s.max()!
        s = s.map { exp($0 - m) }
        let z = s.reduce(0, +)
        for c in 0..<d { ref[i * h * d + n * d + c] = Float((0...i).reduce(0.0) { $0 + s[$1] / z * Double(v[$1 * kvh * d + g * d + c]) }) }
      }
    }
    #expect(maxAbsDiff(y, ref) < 1e-5)
  }

  @Test func siluAndExpAccuracy() {
    let x = (0..<2000).map { Float($0 - 1000) / 10 }
    let y = run(x.count) { Kernels.silu(x, count: x.count, into: $0) }
    for (a, b) in zip(x, y) {
      let ref = Double(a) / (1 + exp(-Double(a)))
      #expect(abs(Double(b) - ref) <= 1e-6 * max(1, abs(ref)), "silu(\(a))")
    }
    for a in stride(from: -87.0, through: 88.0, by: 0.37) {
      let e = FastMath.exp(Float(a))
      #expect(abs(Double(e) / exp(Double(Float(a))) - 1) < 1e-6, "exp(\(a))")
    }
  }

  @Test func nllMatchesNaiveLogSoftmax() {
    let (rows, v) = (3, 101)
    let logits = random(rows * v, seed: 10, scale: 5)
    let targets: [Int32] = [0, 50, 100]
    var scratch = [Float](repeating: 0, count: v)
    let got = scratch.withUnsafeMutableBufferPointer { Kernels.nllSum(logits: logits, rows: rows, columns: v, targets: targets, scratch: $0.baseAddress!) }
    var ref = 0.0
    for r in 0..<rows {
      let row = logits[(r * v)..<((r + 1) * v)].map(Double.init)
      let m = row.max()!
      ref += m + log(row.reduce(0) { $0 + exp($1 - m) }) - row[Int(targets[r])]
    }
    #expect(abs(got - ref) < 1e-4)
  }
}
