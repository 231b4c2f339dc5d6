import CQoptCodecs
import QoptIR
import QoptPasses
import QoptTestSupport
import Testing

/// A layer wide enough for two K-quant super-blocks: weights `rows × cols`, calibration inputs
/// `n × cols` with channels of very different scales sharing a common factor, `H = 2XᵀX / n`.
private struct WideLayer {
  let rows = 8, cols = 512, n = 768
  var w: [Float] = []
  var h: [Float] = []
  /// Per column mean x² (what an importance matrix holds).
  var meanSquare: [Float] = []

  init(seed: UInt64) {
    var rng = SplitMix64(seed: seed)
    w = (0..<(rows * cols)).map { _ in Float(rng.normal() * 0.05) }
    let channelScale = (0..<cols).map { j in 0.2 + Double((j * 7) % 11) / 3 }
    var x = [Double](repeating: 0, count: n * cols)
    for t in 0..<n {
      let shared = rng.normal()
      for j in 0..<cols { x[t * cols + j] = channelScale[j] * (rng.normal() + 0.7 * shared) }
    }
    var hd = [Double](repeating: 0, count: cols * cols)
    for t in 0..<n {
      for i in 0..<cols where x[t * cols + i] != 0 {
        let xi = x[t * cols + i]
        for j in 0..<cols { hd[i * cols + j] += xi * x[t * cols + j] }
      }
    }
    h = hd.map { Float(2 * $0 / Double(n)) }
    meanSquare = (0..<cols).map { Float(hd[$0 * cols + $0] / Double(n)) }
  }

  /// `tr((W − Q) H (W − Q)ᵀ)` in f64.
  func proxyLoss(_ q: [Float]) -> Double {
    var total = 0.0
    for r in 0..<rows {
      let d = (0..<cols).map { Double(w[r * cols + $0] - q[r * cols + $0]) }
      for i in 0..<cols {
        var s = 0.0
        for j in 0..<cols { s += Double(h[i * cols + j]) * d[j] }
        total += d[i] * s
      }
    }
    return total
  }
}

/// ggml's reference decoder (`to_float`) of a `!q.ggml<…>` weight's blocks.
private func referenceDecode(_ q: QuantizedTensor) -> [Float] {
  guard case .ggml(let k) = q.scheme else { return [] }
  let (rows, cols) = (q.shape[0], q.shape[1])
  var y = [Float](repeating: .nan, count: rows * cols)
  let rc = q.codes.bytes.withUnsafeBytes { src in
    y.withUnsafeMutableBufferPointer {
      qopt_ggml_dequantize(
        Int32(k.rawValue), src.baseAddress, $0.baseAddress, Int64(rows), Int64(cols))
    }
  }
  #expect(rc == 0)
  return y
}

/// GPTQ toward a ggml grid (`GGMLGridRounder`: each block's scales and mins chosen by ggml's own
/// search from the error-updated weights, columns then rounded on that grid with error
/// feedback) lowers the proxy loss against round-to-nearest by ggml's encoder, plain and with
/// importance weights; its blocks decode, with ggml's reference decoder, to exactly the values
/// the solver used.
@Test(arguments: [GGMLBlockKind.q4_k, .q6_k, .q4_0, .q5_0, .q8_0], [false, true])
func gptqTowardAGGMLGridBeatsItsRoundToNearest(kind: GGMLBlockKind, weighted: Bool) throws {
  let layer = WideLayer(seed: 5)
  let importance = weighted ? layer.meanSquare : nil
  var rounder = try #require(
    GGMLGridRounder(kind: kind, rows: layer.rows, cols: layer.cols, importance: importance))
  let result = GPTQSolver(dampening: 0.01, blockSize: 128, actOrder: false, staticGroups: false)
    .solve(layer.w, rows: layer.rows, cols: layer.cols, hessian: layer.h, rounder: &rounder)
  #expect(!result.fellBack)
  #expect(result.quantized.scheme == .ggml(kind))
  #expect(result.quantized.shape == [layer.rows, layer.cols])
  #expect(referenceDecode(result.quantized) == result.dequantized)

  var rtn = [UInt8](repeating: 0, count: layer.rows * kind.rowBytes(columns: layer.cols))
  let n = layer.w.withUnsafeBufferPointer { x in
    qopt_ggml_quantize(
      Int32(kind.rawValue), x.baseAddress, &rtn, Int64(layer.rows), Int64(layer.cols), importance)
  }
  #expect(n == rtn.count)
  let rtnValues = referenceDecode(QuantizedTensor(ggml: kind, blocks: rtn, rows: layer.rows))
  let (g, r) = (layer.proxyLoss(result.dequantized), layer.proxyLoss(rtnValues))
  #expect(g < 0.9 * r, "\(kind.name)\(weighted ? " weighted" : ""): gptq \(g) vs rtn \(r)")
}

/// A rounder's code for each element lands where ggml's decoder reads it: rounding every
/// element of a freshly encoded block to its own decoded value reproduces the block.
@Test(arguments: [GGMLBlockKind.q4_k, .q6_k, .q4_0, .q5_0, .q8_0])
func gridRounderWritesCodesWhereGGMLReadsThem(kind: GGMLBlockKind) throws {
  var rng = SplitMix64(seed: 3)
  let cols = 512
  let w = (0..<(2 * cols)).map { _ in Float(rng.normal()) }
  var rounder = try #require(GGMLGridRounder(kind: kind, rows: 2, cols: cols, importance: nil))
  var blocks = [UInt8](repeating: 0, count: 2 * kind.rowBytes(columns: cols))
  _ = w.withUnsafeBufferPointer {
    qopt_ggml_quantize(Int32(kind.rawValue), $0.baseAddress, &blocks, 2, Int64(cols), nil)
  }
  let decoded = referenceDecode(QuantizedTensor(ggml: kind, blocks: blocks, rows: 2))
  let bs = kind.blockSize
  for first in stride(from: 0, to: cols, by: bs) {
    var group = [Float](repeating: 0, count: 2 * bs)
    for r in 0..<2 { for k in 0..<bs { group[r * bs + k] = w[r * cols + first + k] } }
    group.withUnsafeBufferPointer { rounder.fit(group: first, width: bs, values: $0.baseAddress!) }
    for c in first..<(first + bs) {
      var col = [decoded[c], decoded[cols + c]]
      col.withUnsafeMutableBufferPointer { rounder.round(column: c, $0.baseAddress!) }
      #expect(col == [decoded[c], decoded[cols + c]])
    }
  }
  #expect(rounder.result().codes.bytes == blocks)
}
