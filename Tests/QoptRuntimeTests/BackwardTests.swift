import QoptRuntime
import Testing

#if canImport(Glibc)
  import Glibc
#endif

// Gradient checks of the reverse-mode kernels: for a random upstream gradient g and the
// scalar L(x) = Σ g · f(x), the kernel's ∂L/∂x must match central finite differences of a
// Float64 reference forward of f (llama-forward.md equations), on tiny shapes.

/// Deterministic values in [-1, 1).
private func random(_ n: Int, seed: UInt64) -> [Double] {
  var s = seed
  return (0..<n).map { _ in
    s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
    return Double(s >> 11) / Double(1 << 53) * 2 - 1
  }
}

/// Central differences of `L(x) = Σ g · f(x)` with respect to every element of `x`.
private func numericGradient(_ x: [Double], _ g: [Double], _ f: ([Double]) -> [Double], h: Double = 1e-6) -> [Double] {
  (0..<x.count).map { i in
    var p = x, m = x
    p[i] += h
    m[i] -= h
    let lp = zip(f(p), g).reduce(0) { $0 + $1.0 * $1.1 }
    let lm = zip(f(m), g).reduce(0) { $0 + $1.0 * $1.1 }
    return (lp - lm) / (2 * h)
  }
}

private func expectClose(_ analytic: [Float], _ numeric: [Double], _ what: String) {
  #expect(analytic.count == numeric.count)
  let scale = max(numeric.map { abs($0) }.max() ?? 1, 1e-3)
  let worst = zip(analytic, numeric).map { abs(Double($0) - $1) }.max() ?? 0
  #expect(worst / scale < 2e-4, "\(what): max error \(worst) relative to \(scale)")
}

private func f32(_ x: [Double]) -> [Float] { x.map { Float($0) } }

@Test func rmsNormGradient() {
  let (t, d) = (3, 8)
  let x = random(t * d, seed: 1), w = random(d, seed: 2), g = random(t * d, seed: 3)
  let eps = 1e-5
  func f(_ x: [Double]) -> [Double] {
    var y = [Double](repeating: 0, count: x.count)
    for r in 0..<t {
      let ms = (0..<d).reduce(0.0) { $0 + x[r * d + $1] * x[r * d + $1] } / Double(d)
      for j in 0..<d { y[r * d + j] = w[j] * x[r * d + j] / (ms + eps).squareRoot() }
    }
    return y
  }
  var dx = [Float](repeating: 0, count: t * d)
  Kernels.rmsNormBackward(f32(x), rows: t, columns: d, weight: f32(w), eps: Float(eps), dy: f32(g), dx: &dx)
  expectClose(dx, numericGradient(x, g, f), "rms_norm dx")
}

@Test func linearGradients() {
  let (t, k, n) = (4, 5, 3)
  let x = random(t * k, seed: 4), w = random(n * k, seed: 5), g = random(t * n, seed: 6)
  func f(_ x: [Double], _ w: [Double]) -> [Double] {
    var y = [Double](repeating: 0, count: t * n)
    for r in 0..<t { for o in 0..<n { for i in 0..<k { y[r * n + o] += x[r * k + i] * w[o * k + i] } } }
    return y
  }
  var dx = [Float](repeating: 0, count: t * k)
  Kernels.linearBackwardInput(dy: f32(g), rows: t, outFeatures: n, weight: f32(w), inFeatures: k, dx: &dx)
  expectClose(dx, numericGradient(x, g) { f($0, w) }, "linear dx")
  var dw = [Float](repeating: 0, count: n * k)
  Kernels.linearBackwardWeight(dy: f32(g), rows: t, outFeatures: n, input: f32(x), inFeatures: k, dw: &dw)
  expectClose(dw, numericGradient(w, g) { f(x, $0) }, "linear dw")
}

@Test func ropeGradient() {
  let (t, heads, d) = (5, 2, 8)
  let table = RopeTable(headDim: d, theta: 10000, positions: t)
  let x = random(t * heads * d, seed: 7), g = random(t * heads * d, seed: 8)
  func f(_ x: [Double]) -> [Double] {
    var y = x
    let half = d / 2
    for p in 0..<t {
      for h in 0..<heads {
        for i in 0..<half {
          let c = Double(table.cos[p * half + i]), s = Double(table.sin[p * half + i])
          let a = x[p * heads * d + h * d + i], b = x[p * heads * d + h * d + i + half]
          y[p * heads * d + h * d + i] = a * c - b * s
          y[p * heads * d + h * d + i + half] = b * c + a * s
        }
      }
    }
    return y
  }
  var dx = [Float](repeating: 0, count: x.count)
  Kernels.ropeBackward(dy: f32(g), rows: t, heads: heads, table: table, dx: &dx)
  expectClose(dx, numericGradient(x, g, f), "rope dx")
}

// 21 tokens: rows of 16 and more keys run the AVX2 bodies of the softmax and its gradient.
@Test(arguments: [(5, 128), (5, 2), (21, 64), (21, 8)])
func attentionGradients(_ t: Int, _ block: Int) {
  let (heads, kvHeads, d) = (4, 2, 4)
  let q = random(t * heads * d, seed: 9), k = random(t * kvHeads * d, seed: 10), v = random(t * kvHeads * d, seed: 11)
  let g = random(t * heads * d, seed: 12)
  func f(_ q: [Double], _ k: [Double], _ v: [Double]) -> [Double] {
    var o = [Double](repeating: 0, count: t * heads * d)
    let rep = heads / kvHeads
    for h in 0..<heads {
      let kv = h / rep
      for i in 0..<t {
        var s = (0...i).map { j in (0..<d).reduce(0.0) { $0 + q[i * heads * d + h * d + $1] * k[j * kvHeads * d + kv * d + $1] } / Double(d).squareRoot() }
        let m = s.max()!
        s = s.map { exp($0 - m) }
        let z = s.reduce(0, +)
        for j in 0...i { for c in 0..<d { o[i * heads * d + h * d + c] += s[j] / z * v[j * kvHeads * d + kv * d + c] } }
      }
    }
    return o
  }
  var dq = [Float](repeating: 0, count: q.count), dk = [Float](repeating: 0, count: k.count), dv = [Float](repeating: 0, count: v.count)
  Kernels.attentionBackward(
    q: f32(q), k: f32(k), v: f32(v), tokens: t, heads: heads, kvHeads: kvHeads, headDim: d, dOut: f32(g), dq: &dq, dk: &dk, dv: &dv, block: block)
  expectClose(dq, numericGradient(q, g) { f($0, k, v) }, "attention dq")
  expectClose(dk, numericGradient(k, g) { f(q, $0, v) }, "attention dk")
  expectClose(dv, numericGradient(v, g) { f(q, k, $0) }, "attention dv")
}

@Test func siluGradient() {
  let x = random(12, seed: 13).map { $0 * 4 }, g = random(12, seed: 14)
  var dx = [Float](repeating: 0, count: x.count)
  Kernels.siluBackward(f32(x), count: x.count, dy: f32(g), dx: &dx)
  expectClose(dx, numericGradient(x, g) { $0.map { $0 / (1 + exp(-$0)) } }, "silu dx")
}

@Test func mulAndAddGradients() {
  let a = random(10, seed: 15), b = random(10, seed: 16), g = random(10, seed: 17)
  var da = [Float](repeating: 0, count: 10), db = da
  Kernels.mulBackward(f32(a), f32(b), count: 10, dy: f32(g), da: &da, db: &db)
  expectClose(da, numericGradient(a, g) { zip($0, b).map { $0 * $1 } }, "mul da")
  expectClose(db, numericGradient(b, g) { zip(a, $0).map { $0 * $1 } }, "mul db")
  var sa = [Float](repeating: 0, count: 10), sb = sa
  Kernels.addBackward(count: 10, dy: f32(g), da: &sa, db: &sb)
  expectClose(sa, numericGradient(a, g) { zip($0, b).map { $0 + $1 } }, "add da")
  expectClose(sb, numericGradient(b, g) { zip(a, $0).map { $0 + $1 } }, "add db")
}

/// Gradients accumulate: a second call adds to what the first wrote (values used twice).
@Test func backwardAccumulates() {
  let x: [Float] = [0.5, -1, 2]
  var dx: [Float] = [1, 1, 1]
  dx.withUnsafeMutableBufferPointer { p in
    Kernels.mulBackward(x, x, count: 3, dy: [1, 1, 1], da: p.baseAddress!, db: p.baseAddress!)
  }
  #expect(dx == [2, -1, 5])
}
