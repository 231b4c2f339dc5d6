import QoptIR
import QoptPasses
import QoptTestSupport
import Testing

private func run(_ pipeline: String, on m: Module) throws {
  try PassManager(threads: 1) { _ in }.run(
    PipelineParser.parse(pipeline, registry: .builtin()), on: m)
}

/// autoround.md §10 written out in f64 for one group: the full-range scale and the 200
/// candidates −g/(8 − 0.06·k), each rounded to f16, the first strictly smallest weighted error.
private func referenceScale(_ w: [Float], _ imp: [Float]) -> Float {
  let g = w.max { abs($0) < abs($1) } ?? 0
  func f16(_ x: Double) -> Float { Float(Float16(Float(x))) }
  func error(_ s: Float) -> Double {
    zip(w, imp).reduce(0.0) { acc, p in
      let q = min(max((p.0 / s).rounded(.toNearestOrEven), -8), 7)
      let d = Double(s * q - p.0)
      return acc + Double(p.1) * d * d
    }
  }
  var best = f16(-Double(g) / 8), bestError = error(best)
  for k in -100...100 where k != 0 {
    let s = f16(-Double(g) / (8 - 0.06 * Double(k)))
    if error(s) < bestError { (best, bestError) = (s, error(s)) }
  }
  return best
}

/// `rtn<weighted>` picks, per group, the scale of the §10 search, and lowers the importance-
/// weighted error against plain RTN.
@Test func weightedScalesFollowTheSearch() {
  var rng = SplitMix64(seed: 3)
  let (rows, cols) = (4, 64)
  let w = (0..<(rows * cols)).map { _ in Float(rng.normal() * 0.1) }
  let imp = (0..<cols).map { j in Float(0.01 + Double((j * 13) % 7) * abs(rng.normal())) }
  let scheme = IntScheme(bits: 4, symmetric: true, granularity: .group(32), scaleType: .f16)
  let quantizer = IntQuantizer(scheme: scheme, rule: .fullRange)
  let q = w.withUnsafeBufferPointer {
    quantizer.quantizeWeighted($0, rows: rows, cols: cols, importance: imp)
  }
  let plain = w.withUnsafeBufferPointer { quantizer.quantize($0, rows: rows, cols: cols) }
  let scales = q.scale.floats()
  for r in 0..<rows {
    for g in 0..<2 {
      let group = Array(w[(r * cols + g * 32)..<(r * cols + g * 32 + 32)])
      #expect(scales[r * 2 + g] == referenceScale(group, Array(imp[(g * 32)..<(g * 32 + 32)])))
    }
  }
  func weightedError(_ t: QuantizedTensor) -> Double {
    zip(t.dequantized(), w).enumerated().reduce(0.0) { acc, e in
      let d = Double(e.element.0 - e.element.1)
      return acc + Double(imp[e.offset % cols]) * d * d
    }
  }
  #expect(weightedError(q) < weightedError(plain))
}

/// `autoround<iters=0>` after `calibrate` is auto-round's optimized RTN: the same bytes as
/// `rtn<weighted>`; `no-opt-rtn` is plain RTN again.
@Test func autoRoundZeroItersIsOptimizedRTNWithCalibration() throws {
  let a = ExampleModel.make(), b = ExampleModel.make(), c = ExampleModel.make(),
    d = ExampleModel.make()
  try run("calibrate<samples=4;seqlen=32>,autoround<iters=0;group-size=32>", on: a)
  try run("calibrate<samples=4;seqlen=32>,rtn<weighted;group-size=32>", on: b)
  try run("calibrate<samples=4;seqlen=32>,autoround<iters=0;group-size=32;no-opt-rtn>", on: c)
  try run("rtn<group-size=32>", on: d)
  var differsFromPlain = false
  for name in b.weights.names {
    guard let qb = b.weights.quantized(name) else { continue }
    let qa = try #require(a.weights.quantized(name)), qc = try #require(c.weights.quantized(name))
    let qd = try #require(d.weights.quantized(name))
    #expect(qa.codes.bytes == qb.codes.bytes && qa.scale.bytes == qb.scale.bytes, "\(name)")
    #expect(qc.codes.bytes == qd.codes.bytes && qc.scale.bytes == qd.scale.bytes, "\(name)")
    differsFromPlain = differsFromPlain || qb.scale.bytes != qd.scale.bytes
  }
  #expect(differsFromPlain)
}

/// `weighted` needs calibration statistics and a symmetric full-range integer scheme.
@Test(arguments: [
  "rtn<weighted>", "calibrate<samples=2;seqlen=16>,rtn<weighted;no-sym>",
  "calibrate<samples=2;seqlen=16>,rtn<weighted;scheme=nvfp4>",
])
func weightedRTNRefusesWhatItCannotDo(pipeline: String) {
  #expect(throws: (any Error).self) { try run(pipeline, on: ExampleModel.make()) }
}
