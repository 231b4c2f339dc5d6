import QoptIR
import QoptPasses
import QoptTestSupport
import Testing

/// A small layer: weights `rows × cols`, calibration inputs `n × cols` with channels of very
/// different scales and one dead channel (never nonzero), and `H = 2XᵀX / n` in f64.
private struct Layer {
  let rows = 6, cols = 40, n = 96
  let dead = 5
  var w: [Float] = []
  var h: [Double] = []

  init(seed: UInt64) {
    var rng = SplitMix64(seed: seed)
    w = (0..<(rows * cols)).map { _ in Float(rng.normal() * 0.05) }
    let channelScale = (0..<cols).map { j in j == dead ? 0 : 0.2 + Double((j * 7) % 11) / 3 }
    var x = [Double](repeating: 0, count: n * cols)
    for t in 0..<n {
      let shared = rng.normal()
      for j in 0..<cols { x[t * cols + j] = channelScale[j] * (rng.normal() + 0.5 * shared) }
    }
    h = [Double](repeating: 0, count: cols * cols)
    for i in 0..<cols {
      for j in 0..<cols {
        var s = 0.0
        for t in 0..<n { s += x[t * cols + i] * x[t * cols + j] }
        h[i * cols + j] = 2 * s / Double(n)
      }
    }
  }
}

/// GPTQ from the paper's equations (Frantar et al. 2022, eqs. 2–3, the OBS update without the
/// Cholesky reformulation), one row at a time in f64: keep `H⁻¹` of the columns not yet
/// quantized explicitly; quantize column q, move the others by `−(w_q − quant(w_q)) / [H⁻¹]_qq ·
/// (H⁻¹)_{:,q}` and remove q from `H⁻¹` by Gaussian elimination. Int4 symmetric full-range
/// scales (f32 scale dtype) per group of `group` columns, fitted when the group's first column
/// comes (or, `staticGroups`, from the original weights), columns in `order`.
private func referenceGPTQ(
  _ layer: Layer, group: Int, damp: Double, order: [Int], staticGroups: Bool,
  relativeDamping: Bool = false
) -> [Double] {
  let (rows, cols) = (layer.rows, layer.cols)
  var h = layer.h
  var w = layer.w.map(Double.init)
  for j in 0..<cols where h[j * cols + j] == 0 {
    h[j * cols + j] = 1
    for r in 0..<rows { w[r * cols + j] = 0 }
  }
  let mean = (0..<cols).reduce(0.0) { $0 + h[$1 * cols + $1] } / Double(cols)
  for j in 0..<cols { h[j * cols + j] += damp * (relativeDamping ? h[j * cols + j] : mean) }
  // H⁻¹ by Gauss–Jordan elimination.
  var a = h
  var inv = [Double](repeating: 0, count: cols * cols)
  for i in 0..<cols { inv[i * cols + i] = 1 }
  for p in 0..<cols {
    let d = a[p * cols + p]
    for j in 0..<cols { a[p * cols + j] /= d; inv[p * cols + j] /= d }
    for i in 0..<cols where i != p {
      let f = a[i * cols + p]
      for j in 0..<cols {
        a[i * cols + j] -= f * a[p * cols + j]; inv[i * cols + j] -= f * inv[p * cols + j]
      }
    }
  }
  func scale(_ v: ArraySlice<Double>) -> Double {
    let lo = min(v.min() ?? 0, 0), hi = max(v.max() ?? 0, 0)
    let s = (hi < -lo ? -lo : -hi) / 8
    return s < 0 ? min(s, -1e-8) : max(s, 1e-8)
  }
  var q = [Double](repeating: 0, count: rows * cols)
  for r in 0..<rows {
    var row = Array(w[(r * cols)..<((r + 1) * cols)])
    var hinv = inv
    var scales = [Double](repeating: 0, count: (cols + group - 1) / group)
    if staticGroups {
      for g in scales.indices { scales[g] = scale(row[(g * group)..<min(cols, (g + 1) * group)]) }
    }
    for c in order {
      if !staticGroups && c % group == 0 {
        scales[c / group] = scale(row[c..<min(cols, c + group)])
      }
      let s = scales[c / group]
      let v = s * min(max((row[c] / s).rounded(.toNearestOrEven), -8), 7)
      q[r * cols + c] = v
      let e = (row[c] - v) / hinv[c * cols + c]
      for j in 0..<cols { row[j] -= e * hinv[j * cols + c] }
      row[c] = v
      // Remove column c: H⁻¹ ← H⁻¹ − H⁻¹_{:,c} H⁻¹_{c,:} / H⁻¹_cc.
      let hcc = hinv[c * cols + c]
      let colC = (0..<cols).map { hinv[$0 * cols + c] },
        rowC = (0..<cols).map { hinv[c * cols + $0] }
      for i in 0..<cols {
        for j in 0..<cols { hinv[i * cols + j] -= colC[i] * rowC[j] / hcc }
      }
    }
  }
  return q
}

private func solve(
  _ layer: Layer, group: Int, blockSize: Int, actOrder: Bool = false, staticGroups: Bool = false
)
  -> GPTQSolver.Result
{
  let scheme = IntScheme(bits: 4, symmetric: true, granularity: .group(group), scaleType: .f32)
  var rounder = IntGridRounder(
    quantizer: IntQuantizer(scheme: scheme, rule: .fullRange), rows: layer.rows, cols: layer.cols)
  let solver = GPTQSolver(
    dampening: 0.01, blockSize: blockSize, actOrder: actOrder, staticGroups: staticGroups)
  return solver.solve(
    layer.w, rows: layer.rows, cols: layer.cols, hessian: layer.h.map(Float.init), rounder: &rounder
  )
}

/// The blocked, Cholesky-based solver equals the paper's column-by-column OBS updates in f64
/// to 1e-5: groups fitted as they come, with block sizes that split the row into several
/// lazy-update blocks (and one that does not divide it), with static groups, and in activation
/// order (descending diag H, static groups).
@Test(arguments: [
  (8, 16, false, false), (8, 24, false, false), (8, 128, false, false), (8, 16, false, true),
  (8, 16, true, false),
])
func gptqEqualsTheReferenceAlgorithm(group: Int, blockSize: Int, actOrder: Bool, staticGroups: Bool)
{
  let layer = Layer(seed: 7)
  let result = solve(
    layer, group: group, blockSize: blockSize, actOrder: actOrder, staticGroups: staticGroups)
  let diag = (0..<layer.cols).map { layer.h[$0 * layer.cols + $0] }
  let order =
    actOrder
    ? (0..<layer.cols).sorted { diag[$0] != diag[$1] ? diag[$0] > diag[$1] : $0 < $1 }
    : Array(0..<layer.cols)
  let expected = referenceGPTQ(
    layer, group: group, damp: 0.01, order: order, staticGroups: staticGroups || actOrder)
  let worst = zip(result.dequantized, expected).map { abs(Double($0) - $1) }.max() ?? 0
  #expect(worst < 1e-5, "max |Δ| = \(worst)")
  #expect(!result.fellBack)
  // The stored codes and scales dequantize to the same weights.
  #expect(zip(result.quantized.dequantized(), result.dequantized).allSatisfy { $0 == $1 })
  // The dead channel is quantized to zero.
  #expect((0..<layer.rows).allSatisfy { result.dequantized[$0 * layer.cols + layer.dead] == 0 })
}

/// GPTQ lowers the layer's output error `tr((W − Q) H (W − Q)ᵀ)` against rounding to nearest
/// with the same grid.
@Test func gptqBeatsRoundToNearestOnTheOutputError() {
  let layer = Layer(seed: 11)
  let gptq = solve(layer, group: 8, blockSize: 128).dequantized
  let scheme = IntScheme(bits: 4, symmetric: true, granularity: .group(8), scaleType: .f32)
  let rtn = layer.w.withUnsafeBufferPointer {
    IntQuantizer(scheme: scheme, rule: .fullRange).quantize($0, rows: layer.rows, cols: layer.cols)
  }.dequantized()
  func outputError(_ q: [Float]) -> Double {
    var total = 0.0
    for r in 0..<layer.rows {
      let d = (0..<layer.cols).map { Double(layer.w[r * layer.cols + $0] - q[r * layer.cols + $0]) }
      for i in 0..<layer.cols where i != layer.dead {
        for j in 0..<layer.cols where j != layer.dead {
          total += d[i] * layer.h[i * layer.cols + j] * d[j]
        }
      }
    }
    return total
  }
  #expect(outputError(gptq) < 0.8 * outputError(rtn))
}

/// The pass on the example model: every linear but the head quantized with `rtn`'s types,
/// deterministic, for int, NVFP4 (fused global scales fixed first) and FP8.
@Test(arguments: [
  "gptq<bits=4;group-size=32>", "gptq<bits=3;group-size=16;act-order;no-sym>",
  "gptq<bits=4;group-size=32;sink-weight=64>", "gptq<bits=4;group-size=32;true-sequential>",
  "gptq<bits=4;group-size=32;search-scale;sink-weight=0>",
  "gptq<scheme=nvfp4>,fuse-scales", "gptq<scheme=fp8>",
])
func gptqPassQuantizesTheExampleModel(pipeline: String) throws {
  func run() throws -> Module {
    let m = ExampleModel.make()
    try PassManager(threads: 1) { _ in }.run(
      PipelineParser.parse("calibrate<samples=4;seqlen=32>,\(pipeline)", registry: .builtin()),
      on: m)
    return m
  }
  let a = try run(), b = try run()
  let quantized = a.weights.names.filter { a.weights.quantized($0) != nil }
  #expect(quantized.count == 14)
  for name in quantized {
    let qa = try #require(a.weights.quantized(name)), qb = try #require(b.weights.quantized(name))
    #expect(qa.codes.bytes == qb.codes.bytes && qa.scale.bytes == qb.scale.bytes, "\(name)")
  }
}

/// Without calibration data the pass says what to put before it.
@Test func gptqNeedsCalibration() {
  let m = ExampleModel.make()
  #expect {
    try PassManager(threads: 1) { _ in }.run(
      PipelineParser.parse("gptq", registry: .builtin()), on: m)
  } throws: { "\($0)".contains("calibrate") }
}

/// The Hessian counts the first token of each calibration window `sink-weight` times (and is
/// the plain `2·XᵀX / n` at weight 1): equal to the f64 sum with those rows weighted, however
/// the rows arrive in batches.
@Test(arguments: [1.0, 7.0, 512.0])
func gptqHessianWeightsTheFirstTokenOfEachWindow(sinkWeight: Double) {
  let (cols, tokens, windows) = (5, 4, 3)
  var rng = SplitMix64(seed: 3)
  let x = (0..<(windows * tokens * cols)).map { _ in Float(rng.normal()) }
  var h = GPTQHessian(columns: cols, tokensPerWindow: tokens, sinkWeight: sinkWeight)
  x.withUnsafeBufferPointer { p in
    h.add(p.baseAddress!, count: 5)  // safe: non-empty
    h.add(p.baseAddress! + 5 * cols, count: windows * tokens - 5)
  }
  var expected = [Double](repeating: 0, count: cols * cols)
  var total = 0.0
  for t in 0..<(windows * tokens) {
    let c = t % tokens == 0 ? sinkWeight : 1
    total += c
    for i in 0..<cols {
      for j in 0..<cols { expected[i * cols + j] += c * Double(x[t * cols + i] * x[t * cols + j]) }
    }
  }
  let got = h.matrix()
  let worst = (0..<(cols * cols)).map { abs(Double(got[$0]) - 2 * expected[$0] / total) }.max() ?? 0
  #expect(worst < 1e-5, "max |Δ| = \(worst)")
}

/// With `search-scale` and a Hessian that couples no columns (`H = c·I`: nothing to compensate)
/// GPTQ is importance-weighted RTN: the codes and scales of `rtn<weighted>`'s search
/// (auto-round's optimized RTN, tested against the reference) with equal importances.
/// The search splits rows across workers without changing the result.
@Test(arguments: [1, 3])
func gptqSearchScaleWithoutCouplingIsWeightedRoundToNearest(threads: Int) {
  let layer = Layer(seed: 5)
  let (rows, cols) = (layer.rows, layer.cols)
  let scheme = IntScheme(bits: 4, symmetric: true, granularity: .group(8), scaleType: .f16)
  let quantizer = IntQuantizer(scheme: scheme, rule: .fullRange)
  var h = [Float](repeating: 0, count: cols * cols)
  for j in 0..<cols { h[j * cols + j] = 3 }
  var rounder = IntGridRounder(
    quantizer: quantizer, rows: rows, cols: cols, importance: (0..<cols).map { h[$0 * cols + $0] },
    threads: threads)
  let gptq = GPTQSolver().solve(layer.w, rows: rows, cols: cols, hessian: h, rounder: &rounder)
  let rtn = layer.w.withUnsafeBufferPointer {
    quantizer.quantizeWeighted(
      $0, rows: rows, cols: cols, importance: [Float](repeating: 1, count: cols))
  }
  #expect(gptq.quantized.codes.bytes == rtn.codes.bytes)
  #expect(gptq.quantized.scale.bytes == rtn.scale.bytes)
  // The search changed some scale away from the plain full-range rule's.
  let plain = layer.w.withUnsafeBufferPointer { quantizer.quantize($0, rows: rows, cols: cols) }
  #expect(plain.scale.bytes != rtn.scale.bytes)
}

/// `true-sequential` stages from dataflow: q/k/v read the block input's norm, o reads the
/// attention over them, gate/up the norm after o's residual add, down the product of gate/up.
@Test func gptqTrueSequentialStagesFollowTheDataflow() throws {
  let m = ExampleModel.make()
  let f = try #require(m.function(named: "block.0"))
  let targets = f.body.filter { $0.kind == .linear }.compactMap { op in
    op.operands[1].definingOp.flatMap { p in p.paramName.map { ($0, p) } }
  }
  let stages = GPTQStages.split(targets, in: f)
  let short = stages.map {
    $0.map { $0.0.split(separator: ".").dropLast().last.map(String.init) ?? "" }
  }
  #expect(
    short == [
      ["q_proj", "k_proj", "v_proj"], ["o_proj"], ["gate_proj", "up_proj"], ["down_proj"],
    ])
}

/// `damp-relative` (each channel dampened by `damp · H_jj`) equals the reference algorithm run
/// on `H + damp·diag H`, to 1e-5.
@Test(arguments: [0.1, 1.0])
func gptqRelativeDampingEqualsTheReference(damp: Double) {
  let layer = Layer(seed: 9)
  let scheme = IntScheme(bits: 4, symmetric: true, granularity: .group(8), scaleType: .f32)
  var rounder = IntGridRounder(
    quantizer: IntQuantizer(scheme: scheme, rule: .fullRange), rows: layer.rows, cols: layer.cols)
  let result = GPTQSolver(dampening: damp, blockSize: 16, relativeDamping: true).solve(
    layer.w, rows: layer.rows, cols: layer.cols, hessian: layer.h.map(Float.init),
    rounder: &rounder)
  let expected = referenceGPTQ(
    layer, group: 8, damp: damp, order: Array(0..<layer.cols), staticGroups: false,
    relativeDamping: true)
  let worst = zip(result.dequantized, expected).map { abs(Double($0) - $1) }.max() ?? 0
  #expect(worst < 1e-5, "max |Δ| = \(worst)")
}

/// `search-scale` on NVFP4: with an uncoupled Hessian of unequal diagonal (nothing to
/// compensate, so each group is rounded on its own) every 16-wide group's importance-weighted
/// error is at most the max-based E4M3 scale's, and the search lowers the total.
@Test func gptqNVFP4SearchScaleNeverLosesToTheRule() {
  let (rows, cols) = (6, 64)
  var g = SplitMix64(seed: 11)
  let w = (0..<(rows * cols)).map { _ in Float.random(in: -1...1, using: &g) }
  let importance = (0..<cols).map { _ in Float.random(in: 0.01...4, using: &g) }
  var h = [Float](repeating: 0, count: cols * cols)
  for j in 0..<cols { h[j * cols + j] = importance[j] }
  let gs = NVFP4Quantizer.globalScale(amax: w.map(abs).max() ?? 1)
  func weightedError(_ importance: [Float]?) -> [Float] {
    var rounder = NVFP4GridRounder(rows: rows, cols: cols, globalScale: gs, importance: importance)
    let q = GPTQSolver().solve(w, rows: rows, cols: cols, hessian: h, rounder: &rounder)
    let d = q.quantized.dequantized()
    return (0..<(rows * cols / 16)).map { grp in
      let (r, c0) = (grp / (cols / 16), grp % (cols / 16) * 16)
      return (c0..<(c0 + 16)).reduce(Float(0)) {
        let e = w[r * cols + $1] - d[r * cols + $1]
        return $0 + h[$1 * cols + $1] * e * e
      }
    }
  }
  let plain = weightedError(nil)
  let searched = weightedError(importance)
  for (s, p) in zip(searched, plain) { #expect(s <= p * (1 + 1e-6) + 1e-12) }
  #expect(searched.reduce(0, +) < plain.reduce(0, +))
}
