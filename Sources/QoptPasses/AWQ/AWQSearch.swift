import QoptIR
import QoptRuntime

#if canImport(Glibc)
  import Glibc
#endif

// AWQ's two searches on one block's cached linear inputs: the per-channel scale of a fold site
// and the clipping range of each weight group.

extension RTNOptions {
  /// `w` (`rows × cols`) quantized and dequantized as these options will quantize it (the
  /// searches' model of the quantizing pass that follows).
  func fakeQuantized(_ w: [Float], rows: Int, cols: Int) throws -> [Float] {
    if let kind = scheme.ggml {
      guard let k = kind.fallback(rowLength: cols) else { return w }
      return w.withUnsafeBufferPointer {
        GGMLQuantizer.quantize($0, rows: rows, cols: cols, as: k, importance: nil, threads: 1)
          .dequantized()
      }
    }
    var s = try scheme(columns: cols)
    return try w.withUnsafeBufferPointer { p in
      switch scheme {
      case .fp8:
        return FP8Quantizer.quantize(p, rows: rows, cols: cols, granularity: s.granularity)
          .dequantized()
      case .nvfp4:
        guard cols % NVFP4Quantizer.groupSize == 0 else {
          throw PassError("a weight has \(cols) columns; nvfp4 needs a multiple of 16")
        }
        return NVFP4Quantizer.quantize(p, rows: rows, cols: cols).dequantized()
      case .int:
        if scaleDType == .auto { s.scaleType = scaleRule == .fullRange ? .f16 : .f32 }
        return IntQuantizer(scheme: s, rule: scaleRule).quantize(p, rows: rows, cols: cols)
          .dequantized()
      default: preconditionFailure("ggml schemes are handled above")
      }
    }
  }

  /// Columns sharing one scale along a row (0: one scale per tensor, no clipping search).
  func groupWidth(columns: Int) throws -> Int {
    if scheme == .nvfp4 { return NVFP4Quantizer.groupSize }
    if let k = scheme.ggml { return k.fallback(rowLength: columns)?.blockSize ?? 0 }
    switch try scheme(columns: columns).granularity {
    case .tensor: return 0
    case .channel: return columns
    case .group(let n): return min(n, columns)
    }
  }
}

/// The cached input rows of one fold site or linear: `rows × cols`, row-major.
struct AWQInputs {
  var x: [Float]
  let rows: Int, cols: Int
}

enum AWQSearch {
  /// `X · Wᵀ` (`x.rows × wRows`).
  static func outputs(_ x: AWQInputs, _ w: [Float], rows wRows: Int) -> [Float] {
    var out = [Float](repeating: 0, count: x.rows * wRows)
    x.x.withUnsafeBufferPointer { xp in
      w.withUnsafeBufferPointer { wp in
        out.withUnsafeMutableBufferPointer { op in
          BLAS.sgemm(
            transB: true, m: x.rows, n: wRows, k: x.cols, a: xp.baseAddress!, lda: x.cols,
            b: wp.baseAddress!,  // safe: non-empty
            ldb: x.cols, c: op.baseAddress!, ldc: wRows)  // safe: as above
        }
      }
    }
    return out
  }

  /// The best per-channel scale of a site (llm-compressor `_compute_best_scale`): for
  /// `α = k / grid`, `s = x̄^α / (w̄^(1−α) + 1e-4)` (x̄ the mean |x| per channel, w̄ the mean over
  /// the rows of |w| divided by its group's max |w|), clamped to ≥ 1e-4 and normalised by
  /// `√(max s · min s)`; each linear is replaced by `Q(W·s)/s` and the candidate with the
  /// smallest squared error of the linears' outputs wins. No scaling (s = 1) is the first
  /// candidate, so the search never makes the outputs worse. Returns (s, α; −1 for none).
  static func bestScale(
    _ x: AWQInputs, weights: [(w: [Float], rows: Int)], options: AWQOptions
  ) throws -> ([Float], Double) {
    let cols = x.cols
    var xMean = [Float](repeating: 0, count: cols)
    for r in 0..<x.rows {
      for j in 0..<cols { xMean[j] += abs(x.x[r * cols + j]) }
    }
    for j in 0..<cols { xMean[j] /= Float(max(x.rows, 1)) }
    var wMean = [Float](repeating: 0, count: cols)
    var totalRows = 0
    let gw = try options.weights.groupWidth(columns: cols)
    for (w, rows) in weights {
      totalRows += rows
      for r in 0..<rows {
        for c0 in stride(from: 0, to: cols, by: gw == 0 ? cols : gw) {
          let c1 = gw == 0 ? cols : min(cols, c0 + gw)
          var m: Float = 0
          for j in c0..<c1 { m = max(m, abs(w[r * cols + j])) }
          for j in c0..<c1 { wMean[j] += abs(w[r * cols + j]) / (m + 1e-6) }
        }
      }
    }
    for j in 0..<cols { wMean[j] /= Float(max(totalRows, 1)) }
    let reference = weights.map { outputs(x, $0.w, rows: $0.rows) }
    func loss(_ s: [Float]) throws -> Double {
      var total = 0.0
      for ((w, rows), ref) in zip(weights, reference) {
        var scaled = w
        for i in 0..<scaled.count { scaled[i] *= s[i % cols] }
        var q = try options.weights.fakeQuantized(scaled, rows: rows, cols: cols)
        for i in 0..<q.count { q[i] /= s[i % cols] }
        let out = outputs(x, q, rows: rows)
        var acc = 0.0
        for i in 0..<out.count { let d = Double(out[i] - ref[i]); acc += d * d }
        total += acc
      }
      return total
    }
    var best = [Float](repeating: 1, count: cols)
    var bestLoss = try loss(best)
    var bestAlpha = -1.0
    for k in 0..<options.grid {
      let a = Float(k) / Float(options.grid)
      var s = (0..<cols).map { j in
        max(
          options.duoScaling ? pow(xMean[j], a) / (pow(wMean[j], 1 - a) + 1e-4) : pow(xMean[j], a),
          1e-4)
      }
      let norm = ((s.max() ?? 1) * (s.min() ?? 1)).squareRoot()
      for j in 0..<cols { s[j] /= norm }
      let l = try loss(s)
      if l < bestLoss {
        (best, bestLoss, bestAlpha) = (s, l, Double(a))
      }
    }
    return (best, bestAlpha)
  }

  /// AutoAWQ's `auto_clip`: per row and group, the clipping bound `max|w_g| · (1 − i/grid)`,
  /// i < grid/2, whose quantized group gives the smallest squared error of the group's partial
  /// outputs `Σ_{j∈g} x_j w_j` over the cached tokens; returns `w` clamped to the bounds.
  static func clipped(
    _ w: [Float], rows: Int, _ x: AWQInputs, options: AWQOptions
  ) throws -> [Float] {
    let cols = x.cols
    let gw = try options.weights.groupWidth(columns: cols)
    guard gw > 0 else { return w }
    let groups = (cols + gw - 1) / gw
    var orgMax = [Float](repeating: 0, count: rows * groups)
    for r in 0..<rows {
      for j in 0..<cols {
        orgMax[r * groups + j / gw] = max(orgMax[r * groups + j / gw], abs(w[r * cols + j]))
      }
    }
    func groupErrors(_ q: [Float], _ ref: [[Float]]?) -> ([[Float]], [Float]) {
      var outs: [[Float]] = []
      var err = [Float](repeating: 0, count: rows * groups)
      for g in 0..<groups {
        let c0 = g * gw, n = min(cols, c0 + gw) - c0
        var out = [Float](repeating: 0, count: x.rows * rows)
        x.x.withUnsafeBufferPointer { xp in
          q.withUnsafeBufferPointer { qp in
            out.withUnsafeMutableBufferPointer { op in
              BLAS.sgemm(
                transB: true, m: x.rows, n: rows, k: n, a: xp.baseAddress! + c0, lda: cols,
                b: qp.baseAddress! + c0,  // safe: non-empty
                ldb: cols, c: op.baseAddress!, ldc: rows)  // safe: as above
            }
          }
        }
        if let ref {
          for t in 0..<x.rows {
            for r in 0..<rows {
              let d = out[t * rows + r] - ref[g][t * rows + r]; err[r * groups + g] += d * d
            }
          }
        }
        outs.append(out)
      }
      return (outs, err)
    }
    let (reference, _) = groupErrors(w, nil)
    var bestErr = [Float](repeating: .infinity, count: rows * groups)
    var bound = orgMax
    for i in 0..<max(1, options.grid / 2) {
      let f = 1 - Float(i) / Float(options.grid)
      var cand = w
      for r in 0..<rows {
        for j in 0..<cols {
          let m = orgMax[r * groups + j / gw] * f
          cand[r * cols + j] = min(max(cand[r * cols + j], -m), m)
        }
      }
      let q = try options.weights.fakeQuantized(cand, rows: rows, cols: cols)
      let (_, err) = groupErrors(q, reference)
      for k in 0..<err.count where err[k] < bestErr[k] {
        bestErr[k] = err[k]
        bound[k] = orgMax[k] * f
      }
    }
    var out = w
    for r in 0..<rows {
      for j in 0..<cols {
        let m = bound[r * groups + j / gw]
        out[r * cols + j] = min(max(out[r * cols + j], -m), m)
      }
    }
    return out
  }
}
