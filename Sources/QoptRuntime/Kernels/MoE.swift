#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Mixture-of-experts routing as transformers computes it (`Qwen3MoeSparseMoeBlock`,
/// `MixtralSparseMoeBlock`): `softmax(logits)` in f32, the top-k experts by probability, and
/// with `normalize` their probabilities divided by their sum. The route is dense `[T, E]`:
/// zero outside each token's top-k, so a token goes to expert e iff `route[t, e] != 0`.
extension Kernels {
  /// Router logits `[T, E]` → route weights `[T, E]`. Ties keep the lower expert index
  /// (torch's CPU topk does the same for the small E of real routers). O(T·E·k).
  public static func moeRoute(
    _ logits: UnsafePointer<Float>, rows t: Int, experts e: Int, topK k: Int, normalize: Bool,
    into y: UnsafeMutablePointer<Float>
  ) {
    var p = [Float](repeating: 0, count: e)
    var chosen = [Int]()
    for r in 0..<t {
      let l = logits + r * e, out = y + r * e
      var m = -Float.infinity
      for j in 0..<e { m = max(m, l[j]) }
      var sum: Float = 0
      for j in 0..<e {
        p[j] = expf(l[j] - m)
        sum += p[j]
      }
      for j in 0..<e { p[j] /= sum }
      chosen.removeAll(keepingCapacity: true)
      for _ in 0..<min(k, e) {
        var best = -1
        for j in 0..<e where !chosen.contains(j) && (best < 0 || p[j] > p[best]) { best = j }
        chosen.append(best)
      }
      var kept: Float = 0
      for j in chosen { kept += p[j] }
      for j in 0..<e { out[j] = 0 }
      for j in chosen { out[j] = normalize ? p[j] / kept : p[j] }
    }
  }

  /// Route backward (the selection held fixed): with `normalize` the kept weights are a
  /// softmax over the kept logits, `dl_j += w_j (g_j − Σ_i w_i g_i)` for kept j; without, the
  /// softmax over all experts with `g` zero outside the top-k, `dl_j += p_j (g_j − Σ_i p_i g_i)`.
  /// O(T·E).
  public static func moeRouteBackward(
    _ logits: UnsafePointer<Float>, route: UnsafePointer<Float>, rows t: Int, experts e: Int,
    normalize: Bool,
    dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>
  ) {
    var p = [Float](repeating: 0, count: e)
    for r in 0..<t {
      let w = route + r * e, g = dy + r * e, d = dx + r * e, l = logits + r * e
      if normalize {
        var dot: Float = 0
        for j in 0..<e where w[j] != 0 { dot += w[j] * g[j] }
        for j in 0..<e where w[j] != 0 { d[j] += w[j] * (g[j] - dot) }
      } else {
        var m = -Float.infinity
        for j in 0..<e { m = max(m, l[j]) }
        var sum: Float = 0
        for j in 0..<e {
          p[j] = expf(l[j] - m)
          sum += p[j]
        }
        var dot: Float = 0
        for j in 0..<e {
          p[j] /= sum
          if w[j] != 0 { dot += p[j] * g[j] }
        }
        for j in 0..<e { d[j] += p[j] * ((w[j] != 0 ? g[j] : 0) - dot) }
      }
    }
  }

  /// The tokens routed to `expert`, in order (every token when `all`).
  public static func moeTokens(
    route: UnsafePointer<Float>, rows t: Int, experts e: Int, expert: Int, all: Bool = false
  ) -> [Int] {
    all ? Array(0..<t) : (0..<t).filter { route[$0 * e + expert] != 0 }
  }

  /// `y[i] = x[tokens[i]]` (rows of width d). O(|tokens|·d).
  public static func gatherRows(
    _ x: UnsafePointer<Float>, columns d: Int, tokens: [Int], into y: UnsafeMutablePointer<Float>
  ) {
    for (i, t) in tokens.enumerated() { (y + i * d).update(from: x + t * d, count: d) }
  }

  /// `dx[tokens[i]] += dy[i]`. O(|tokens|·d).
  public static func scatterAddRows(
    dy: UnsafePointer<Float>, columns d: Int, tokens: [Int], dx: UnsafeMutablePointer<Float>
  ) {
    for (i, t) in tokens.enumerated() {
      let s = dy + i * d, o = dx + t * d
      for j in 0..<d { o[j] += s[j] }
    }
  }

  /// `out[t] += route[t, expert] · y[i]` for `t = tokens[i]`, skipping tokens whose weight is
  /// zero (rows computed for statistics only). Called for experts in ascending order, it sums
  /// as transformers' `index_add_` loop does. O(|tokens|·d).
  public static func moeCombineAdd(
    route: UnsafePointer<Float>, experts e: Int, expert: Int, tokens: [Int],
    y: UnsafePointer<Float>, columns d: Int,
    into out: UnsafeMutablePointer<Float>
  ) {
    for (i, t) in tokens.enumerated() {
      let w = route[t * e + expert]
      guard w != 0 else { continue }
      let s = y + i * d, o = out + t * d
      for j in 0..<d { o[j] += s[j] * w }
    }
  }
}

extension Kernels {
  /// Combine backward for one expert: `dy_e[i] += route[t, e] · dOut[t]` and
  /// `dRoute[t, e] += dOut[t] · y_e[i]` for `t = tokens[i]` with a non-zero weight. O(|tokens|·d).
  public static func moeCombineBackward(
    route: UnsafePointer<Float>, experts e: Int, expert: Int, tokens: [Int],
    y: UnsafePointer<Float>, columns d: Int,
    dOut: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>?,
    dRoute: UnsafeMutablePointer<Float>?
  ) {
    for (i, t) in tokens.enumerated() {
      let w = route[t * e + expert]
      guard w != 0 else { continue }
      let g = dOut + t * d
      if let dy {
        let o = dy + i * d
        for j in 0..<d { o[j] += w * g[j] }
      }
      if let dRoute {
        var dot: Float = 0
        let s = y + i * d
        for j in 0..<d { dot += g[j] * s[j] }
        dRoute[t * e + expert] += dot
      }
    }
  }
}
