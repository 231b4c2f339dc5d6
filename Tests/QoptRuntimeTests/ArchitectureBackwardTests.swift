import Foundation
import QoptRuntime
import Testing

// Gradient checks of the reverse kernels the newer families need (gelu-tanh, column slices,
// partial RoPE, windowed/scaled/soft-capped attention, MoE routing, dispatch and combine):
// for a random upstream gradient g and L(x) = Σ g · f(x), each kernel's ∂L/∂x must match
// central differences of a Float64 reference forward written here from the formulas.

private func random(_ n: Int, seed: UInt64) -> [Double] {
  var s = seed
  return (0..<n).map { _ in
    s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
    return Double(s >> 11) / Double(1 << 53) * 2 - 1
  }
}

private func numericGradient(
  _ x: [Double], _ g: [Double], _ f: ([Double]) -> [Double], h: Double = 1e-6
) -> [Double] {
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

@Test func geluTanhGradientAndValue() {
  let x = random(16, seed: 1).map { $0 * 4 }, g = random(16, seed: 2)
  let c = (2 / Double.pi).squareRoot()
  func f(_ x: [Double]) -> [Double] {
    x.map { 0.5 * $0 * (1 + tanh(c * ($0 + 0.044715 * $0 * $0 * $0))) }
  }
  var y = [Float](repeating: 0, count: x.count)
  Kernels.geluTanh(f32(x), count: x.count, into: &y)
  #expect(zip(y, f(x)).allSatisfy { abs(Double($0) - $1) < 1e-6 })
  var dx = [Float](repeating: 0, count: x.count)
  Kernels.geluTanhBackward(f32(x), count: x.count, dy: f32(g), dx: &dx)
  expectClose(dx, numericGradient(x, g, f), "gelu_tanh dx")
}

@Test func sliceGradient() {
  let (t, n, start, size) = (3, 10, 4, 5)
  let x = random(t * n, seed: 3), g = random(t * size, seed: 4)
  func f(_ x: [Double]) -> [Double] {
    (0..<t).flatMap { r in x[(r * n + start)..<(r * n + start + size)] }
  }
  var y = [Float](repeating: 0, count: t * size)
  Kernels.sliceColumns(f32(x), rows: t, columns: n, start: start, size: size, into: &y)
  #expect(y == f32(f(x)))
  var dx = [Float](repeating: 0, count: x.count)
  Kernels.sliceColumnsBackward(dy: f32(g), rows: t, columns: n, start: start, size: size, dx: &dx)
  expectClose(dx, numericGradient(x, g, f), "slice dx")
}

/// Partial rotary (Phi-3): the first `r` of each `d`-wide head rotate, the rest pass through.
@Test func partialRopeGradient() {
  let (t, heads, d, r) = (4, 2, 8, 6)
  let table = RopeTable(headDim: r, theta: 10000, positions: t)
  let x = random(t * heads * d, seed: 5), g = random(t * heads * d, seed: 6)
  func f(_ x: [Double]) -> [Double] {
    var y = x
    let half = r / 2
    for p in 0..<t {
      for h in 0..<heads {
        let o = p * heads * d + h * d
        for i in 0..<half {
          let c = Double(table.cos[p * half + i]), s = Double(table.sin[p * half + i])
          y[o + i] = x[o + i] * c - x[o + i + half] * s
          y[o + i + half] = x[o + i + half] * c + x[o + i] * s
        }
      }
    }
    return y
  }
  var y = [Float](repeating: 0, count: x.count)
  Kernels.rope(f32(x), rows: t, heads: heads, table: table, into: &y, headStride: d)
  #expect(zip(y, f(x)).allSatisfy { abs(Double($0) - $1) < 1e-6 })
  var dx = [Float](repeating: 0, count: x.count)
  Kernels.ropeBackward(dy: f32(g), rows: t, heads: heads, table: table, dx: &dx, headStride: d)
  expectClose(dx, numericGradient(x, g, f), "partial rope dx")
}

/// Attention with a score scale, a sliding window and a soft cap (Gemma 2/3).
@Test(arguments: [(nil, nil), (3, nil), (3, 0.8), (nil, 0.5)] as [(Int?, Double?)])
func variantAttentionGradients(_ window: Int?, _ softcap: Double?) {
  let (t, heads, kvHeads, d) = (7, 4, 2, 4)
  let scale = 0.7
  let q = random(t * heads * d, seed: 9), k = random(t * kvHeads * d, seed: 10),
    v = random(t * kvHeads * d, seed: 11)
  let g = random(t * heads * d, seed: 12)
  func f(_ q: [Double], _ k: [Double], _ v: [Double]) -> [Double] {
    var o = [Double](repeating: 0, count: t * heads * d)
    for h in 0..<heads {
      let kv = h / (heads / kvHeads)
      for i in 0..<t {
        let lo = window.map { max(0, i - $0 + 1) } ?? 0
        var s = (lo...i).map { j -> Double in
          let r =
            (0..<d).reduce(0.0) {
              $0 + q[i * heads * d + h * d + $1] * k[j * kvHeads * d + kv * d + $1]
            } * scale
          return softcap.map { $0 * tanh(r / $0) } ?? r
        }
        let m = s.max()!
        s = s.map { exp($0 - m) }
        let z = s.reduce(0, +)
        for (n, j) in (lo...i).enumerated() {
          for c in 0..<d {
            o[i * heads * d + h * d + c] += s[n] / z * v[j * kvHeads * d + kv * d + c]
          }
        }
      }
    }
    return o
  }
  let variant = AttentionVariant(
    scale: Float(scale), window: window, softcap: softcap.map(Float.init))
  var y = [Float](repeating: 0, count: q.count)
  Kernels.attention(
    q: f32(q), k: f32(k), v: f32(v), tokens: t, heads: heads, kvHeads: kvHeads, headDim: d,
    variant: variant, into: &y)
  #expect(zip(y, f(q, k, v)).allSatisfy { abs(Double($0) - $1) < 1e-5 }, "forward")
  var dq = [Float](repeating: 0, count: q.count), dk = [Float](repeating: 0, count: k.count),
    dv = [Float](repeating: 0, count: v.count)
  Kernels.attentionBackward(
    q: f32(q), k: f32(k), v: f32(v), tokens: t, heads: heads, kvHeads: kvHeads, headDim: d,
    variant: variant,
    dOut: f32(g), dq: &dq, dk: &dk, dv: &dv)
  expectClose(dq, numericGradient(q, g) { f($0, k, v) }, "attention dq")
  expectClose(dk, numericGradient(k, g) { f(q, $0, v) }, "attention dk")
  expectClose(dv, numericGradient(v, g) { f(q, k, $0) }, "attention dv")
}

/// Top-k routing with the selection fixed at the base point (the route is piecewise smooth).
@Test(arguments: [true, false])
func moeRouteGradient(_ normalize: Bool) {
  let (t, e, k) = (5, 6, 2)
  let logits = random(t * e, seed: 20).map { $0 * 3 }, g = random(t * e, seed: 21)
  var base = [Float](repeating: 0, count: logits.count)
  Kernels.moeRoute(f32(logits), rows: t, experts: e, topK: k, normalize: normalize, into: &base)
  func f(_ l: [Double]) -> [Double] {
    var y = [Double](repeating: 0, count: l.count)
    for r in 0..<t {
      let row = Array(l[(r * e)..<((r + 1) * e)])
      let m = row.max()!
      let p = row.map { exp($0 - m) }
      let z = p.reduce(0, +)
      let kept = (0..<e).filter { base[r * e + $0] != 0 }
      let zk = kept.reduce(0.0) { $0 + p[$1] / z }
      for j in kept { y[r * e + j] = normalize ? p[j] / z / zk : p[j] / z }
    }
    return y
  }
  #expect(base.enumerated().allSatisfy { abs(Double($0.element) - f(logits)[$0.offset]) < 1e-6 })
  #expect((0..<t).allSatisfy { r in (0..<e).filter { base[r * e + $0] != 0 }.count == k })
  var dl = [Float](repeating: 0, count: logits.count)
  Kernels.moeRouteBackward(
    f32(logits), route: base, rows: t, experts: e, normalize: normalize, dy: f32(g), dx: &dl)
  expectClose(dl, numericGradient(logits, g, f), "moe_route dlogits")
}

/// Dispatch (gather) and combine (weighted scatter-add) with respect to the expert outputs,
/// the route weights and the dispatched input.
@Test func moeDispatchCombineGradients() {
  let (t, e, d) = (6, 3, 4)
  var route = [Float](repeating: 0, count: t * e)
  for r in 0..<t { route[r * e + r % e] = 0.7; route[r * e + (r + 1) % e] = 0.3 }
  let x = random(t * d, seed: 30), g = random(t * d, seed: 31)
  let lists = (0..<e).map { ex in
    route.withUnsafeBufferPointer {
      Kernels.moeTokens(route: $0.baseAddress!, rows: t, experts: e, expert: ex)
    }
  }
  // out = Σ_e route[:, e] · tanh(dispatch_e(x)) — a nonlinear expert so the chain rule shows.
  func f(_ x: [Double], _ w: [Double]) -> [Double] {
    var o = [Double](repeating: 0, count: t * d)
    for ex in 0..<e {
      for tok in lists[ex] {
        for c in 0..<d { o[tok * d + c] += w[tok * e + ex] * tanh(x[tok * d + c]) }
      }
    }
    return o
  }
  var dx = [Float](repeating: 0, count: x.count), dRoute = [Float](repeating: 0, count: route.count)
  for ex in 0..<e {
    let n = lists[ex].count
    var xe = [Float](repeating: 0, count: n * d)
    Kernels.gatherRows(f32(x), columns: d, tokens: lists[ex], into: &xe)
    let ye = xe.map { tanhf($0) }
    var dy = [Float](repeating: 0, count: n * d)
    Kernels.moeCombineBackward(
      route: route, experts: e, expert: ex, tokens: lists[ex], y: ye, columns: d, dOut: f32(g),
      dy: &dy, dRoute: &dRoute)
    let dxe = zip(dy, ye).map { $0 * (1 - $1 * $1) }
    Kernels.scatterAddRows(dy: dxe, columns: d, tokens: lists[ex], dx: &dx)
  }
  let w = route.map(Double.init)
  expectClose(dx, numericGradient(x, g) { f($0, w) }, "dispatch/combine dx")
  let numericRoute = numericGradient(w, g) { f(x, $0) }
  // Only routed entries carry a gradient (the selection is fixed).
  expectClose(dRoute, zip(numericRoute, route).map { $1 != 0 ? $0 : 0 }, "combine droute")
}
