import Dispatch
import QoptIR

/// auto-round's optimized RTN (`iters=0`, `quant_tensor_opt_rtn_sym`; autoround.md §10): per
/// group, the symmetric full-range scale and 2K candidates around it are tried, and the one
/// that minimises the importance-weighted error `Σ_j imp_j · (s·q_j − w_j)²` wins, with `imp`
/// the mean x² of each input channel over the calibration tokens (`calibrate`'s statistics).
///
///     g = the group's element of largest magnitude,  n = 2^(b−1)
///     candidates  s_k = −g / (n − step·k),  k = −K…K   (b ≥ 3: step = 1.5·n/200, K = 100;
///                                                        b = 2: step = 0.01, K = 90)
///     q = clamp(round(w / s_k), −n, n − 1);  the initial s_0 is kept unless strictly beaten
///
/// Each candidate is rounded to the scale dtype before it is tried (the stored scale is what
/// the codes are rounded with). Complexity: 2K + 1 passes over each group.
enum ImportanceWeightedScale {
  /// The chosen scale of one group `w` with per-weight importances `imp`.
  static func search(
    _ w: UnsafeBufferPointer<Float>, importance imp: UnsafePointer<Float>, bits: Int,
    scaleType: DType
  ) -> Float {
    let n = Float(1 << (bits - 1))
    var g: Float = 0
    for x in w where abs(x) > abs(g) { g = x }
    let thresh = IntQuantizer.scaleThreshold(scaleType)
    func rounded(_ s: Float) -> Float {
      let r = roundFloat(s, to: scaleType)
      return r < 0 ? min(r, -thresh) : max(r, thresh)
    }
    func error(_ s: Float) -> Float {
      var e: Float = 0
      for (j, x) in w.enumerated() {
        let q = min(max((x / s).rounded(.toNearestOrEven), -n), n - 1)
        let d = s * q - x
        e += imp[j] * d * d
      }
      return e
    }
    var best = rounded(-g / n)
    var bestError = error(best)
    let (step, k): (Float, Int) = bits >= 3 ? (2 * 0.75 * n / 200, 100) : (0.01, 90)
    for i in -k...k where i != 0 {
      let s = rounded(-g / (n - step * Float(i)))
      let e = error(s)
      if e < bestError {
        best = s
        bestError = e
      }
    }
    return best
  }
}

extension IntQuantizer {
  /// Symmetric full-range quantization with `ImportanceWeightedScale` per group, `importance`
  /// one value per column (shared by every row). Rows are split across `threads` workers.
  package func quantizeWeighted(
    _ w: UnsafeBufferPointer<Float>, rows: Int, cols: Int, importance: [Float], threads: Int = 1
  ) -> QuantizedTensor {
    precondition(
      scheme.symmetric && rule == .fullRange && importance.count == cols,
      "weighted RTN: sym full-range, one importance per column")
    let gpr = scheme.granularity.groupsPerRow(columns: cols)
    let gs = if case .group(let n) = scheme.granularity, gpr > 1 { n } else { cols }
    var scales = [Float](repeating: 0, count: rows * gpr)
    var codes = [Int8](repeating: 0, count: rows * cols)
    let maxq = Float(1 << (scheme.bits - 1))
    nonisolated(unsafe) let wp = w.baseAddress!  // safe: rows·cols > 0
    // safe: both are non-empty (rows·cols > 0).
    nonisolated(unsafe) let sp = scales.withUnsafeMutableBufferPointer { $0.baseAddress! }
    nonisolated(unsafe) let cp = codes.withUnsafeMutableBufferPointer { $0.baseAddress! }
    let st = scheme.scaleType, bits = scheme.bits
    importance.withUnsafeBufferPointer { ib in
      nonisolated(unsafe) let ip = ib.baseAddress!  // safe: cols > 0
      let workers = max(1, min(threads, rows))
      DispatchQueue.concurrentPerform(iterations: workers) { t in
        for r in (rows * t / workers)..<(rows * (t + 1) / workers) {
          for g in 0..<gpr {
            let c0 = g * gs, n = min(cols, c0 + gs) - c0
            let group = UnsafeBufferPointer(start: wp + r * cols + c0, count: n)
            let s = ImportanceWeightedScale.search(
              group, importance: ip + c0, bits: bits, scaleType: st)
            sp[r * gpr + g] = s
            for k in 0..<n {
              cp[r * cols + c0 + k] = Int8(
                min(max((group[k] / s).rounded(.toNearestOrEven), -maxq), maxq - 1))
            }
          }
        }
      }
    }
    return QuantizedTensor(
      scheme: .int(scheme), codes: TensorData(int8: codes, shape: [rows, cols]),
      scale: TensorData(floats: scales, shape: [rows, gpr], as: st), zeroPoint: nil)
  }
}
