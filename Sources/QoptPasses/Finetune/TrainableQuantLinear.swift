import CQoptKernels
import Dispatch
import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// What `finetune` trains in one integer-quantized linear weight, with its quantize-dequantize
/// forward, the exact gradient of each parameter from `∂L/∂ŵ`, Adam's moments, and the codes
/// and scales it freezes to.
///
/// Parameters (codes, scales and zero points in the layout `rtn` stores; asymmetric codes and
/// zero points both shifted by −2^(b−1), which cancels in `code − zero`):
/// - `params=scales`: the scales `s` and, for asymmetric schemes, the zero points `z` (held as
///   floats while training, rounded when frozen); the codes `q` stay fixed:
///   `ŵ = s·(q − z)`, so `∂ŵ/∂s = q − z` and `∂ŵ/∂z = −s` (exact, smooth).
/// - `params=scales+weights`: also the float weights `w`, with codes re-derived each step,
///   `q = clamp(round(w/s + z), qmin, qmax)`, `ŵ = s·(q − z)`, and rounding passed straight
///   through: inside the clamp range `∂ŵ/∂w = 1`, `∂ŵ/∂s = q − z − w/s` (LSQ's step-size
///   gradient), `∂ŵ/∂z = 0`; outside it `∂ŵ/∂w = 0`, `∂ŵ/∂s = q − z`, `∂ŵ/∂z = −s`.
///
/// Memory: one byte per weight (the codes) plus O(groups); with weights trained, 13 more bytes
/// per weight (the f32 weights, their gradient, Adam's two moments) and one for the clamp mask.
package final class TrainableQuantLinear {
  package let name: String
  package let rows: Int, cols: Int
  package let scheme: IntScheme
  package let groupSize: Int
  package let groupsPerRow: Int
  package let perTensor: Bool
  package var scale: [Float]
  /// Empty for symmetric schemes.
  package var zero: [Float]
  package var codes: [Int8]
  /// The float weights, when they train.
  package var weights: [Float]?
  /// Gradients of the last `backward` (accumulated until `clearGradients`).
  package var gradScale: [Float], gradZero: [Float], gradWeights: [Float]?
  /// Adam's first and second moments, laid out as the parameters (scale, zero, weights).
  var moments: [[Float]]
  /// With trained weights: whether each code of the last `qdq` was inside the clamp range.
  private var inside: [UInt8]

  /// From a quantized weight as `rtn` (or `autoround`) left it; with `trainWeights` the float
  /// weights start from the ones it was quantized from when at hand, else from its dequantized
  /// values.
  package init(name: String, _ q: QuantizedTensor, trainWeights: Bool) throws {
    guard case .int(let s) = q.scheme, q.shape.count == 2 else {
      throw PassError("weight \(Printer.symbol(name)) is not an integer-quantized matrix")
    }
    self.name = name
    rows = q.shape[0]
    cols = q.shape[1]
    scheme = s
    perTensor = s.granularity == .tensor
    groupsPerRow = s.granularity.groupsPerRow(columns: cols)
    if case .group(let n) = s.granularity { groupSize = n } else { groupSize = cols }
    scale = q.scale.floats()
    zero = q.zeroPoint.map { $0.int8s().map(Float.init) } ?? []
    codes = q.codes.int8s()
    let expected = perTensor ? 1 : rows * groupsPerRow
    guard scale.count == expected, zero.isEmpty || zero.count == expected,
      codes.count == rows * cols
    else {
      throw PassError("weight \(Printer.symbol(name)) has scales or codes of the wrong size")
    }
    if trainWeights {
      let w = q.source?.floats() ?? q.dequantized()
      weights = w
      gradWeights = [Float](repeating: 0, count: w.count)
    }
    gradScale = [Float](repeating: 0, count: scale.count)
    gradZero = [Float](repeating: 0, count: zero.count)
    moments = []
    inside = trainWeights ? [UInt8](repeating: 1, count: rows * cols) : []
    moments = parameterCounts.flatMap { n in
      [[Float](repeating: 0, count: n), [Float](repeating: 0, count: n)]
    }
  }

  /// Element counts of the parameter arrays, in the order scale, zero, weights.
  var parameterCounts: [Int] { [scale.count, zero.count, weights?.count ?? 0] }

  @inline(__always)
  func group(_ r: Int, _ c: Int) -> Int { perTensor ? 0 : r * groupsPerRow + c / groupSize }

  private var qmin: Float { Float(scheme.qmin) }
  private var qmax: Float { Float(scheme.qmax) }

  /// Runs `body(r0, r1)` over the rows split into contiguous ranges, one per thread (a single
  /// range when one scale covers the tensor, whose reduction is one chain). Each group lies in
  /// one row, so the result does not depend on `threads`.
  private func forRows(threads: Int, _ body: @Sendable (Int, Int) -> Void) {
    let workers = perTensor ? 1 : max(1, min(threads, rows))
    guard workers > 1 else { return body(0, rows) }
    let rows = rows
    DispatchQueue.concurrentPerform(iterations: workers) { t in
      body(rows * t / workers, rows * (t + 1) / workers)
    }
  }

  /// The C kernels' group layout: (group size, groups per row, 0 per tensor).
  private var layout: (Int, Int) { (groupSize, perTensor ? 0 : groupsPerRow) }

  /// Writes `ŵ` (`rows · cols` floats) into `out`, on `threads` threads.
  package func qdq(into out: UnsafeMutablePointer<Float>, threads: Int = 1) {
    let (group, gpr) = layout
    let cols = cols, qmin = qmin, qmax = qmax, hasZero = !zero.isEmpty
    nonisolated(unsafe) let o = out
    scale.withUnsafeBufferPointer { sb in
      zero.withUnsafeBufferPointer { zb in
        codes.withUnsafeMutableBufferPointer { cb in
          nonisolated(unsafe) let s = sb.baseAddress!  // safe: one scale at least
          nonisolated(unsafe) let z = hasZero ? zb.baseAddress : nil
          nonisolated(unsafe) let c = cb.baseAddress!  // safe: rows · cols > 0
          guard let weights else {
            forRows(threads: threads) { r0, r1 in
              qopt_qdq_codes(c, s, z, r0, r1, cols, group, gpr, o)
            }
            return
          }
          weights.withUnsafeBufferPointer { wb in
            inside.withUnsafeMutableBufferPointer { ib in
              nonisolated(unsafe) let w = wb.baseAddress!  // safe: as the codes
              nonisolated(unsafe) let m = ib.baseAddress!  // safe: allocated with the weights
              forRows(threads: threads) { r0, r1 in
                qopt_qdq_ste(w, s, z, qmin, qmax, r0, r1, cols, group, gpr, c, m, o)
              }
            }
          }
        }
      }
    }
  }

  /// Adds the gradients of the parameters from `dw = ∂L/∂ŵ`, using the codes of the last
  /// `qdq`, on `threads` threads.
  package func backward(dw: UnsafePointer<Float>, threads: Int = 1) {
    let (group, gpr) = layout
    let cols = cols, hasZero = !zero.isEmpty
    nonisolated(unsafe) let d = dw
    var gw = gradWeights ?? []
    gradWeights = nil  // unique reference while updated in place
    defer { if weights != nil { gradWeights = gw } }
    scale.withUnsafeBufferPointer { sb in
      zero.withUnsafeBufferPointer { zb in
        codes.withUnsafeBufferPointer { cb in
          (weights ?? []).withUnsafeBufferPointer { wb in
            inside.withUnsafeBufferPointer { ib in
              gradScale.withUnsafeMutableBufferPointer { gsb in
                gradZero.withUnsafeMutableBufferPointer { gzb in
                  gw.withUnsafeMutableBufferPointer { gwb in
                    nonisolated(unsafe) let s = sb.baseAddress!  // safe: one scale at least
                    nonisolated(unsafe) let z = hasZero ? zb.baseAddress : nil
                    nonisolated(unsafe) let c = cb.baseAddress!  // safe: rows · cols > 0
                    nonisolated(unsafe) let w = wb.isEmpty ? nil : wb.baseAddress
                    nonisolated(unsafe) let m = ib.isEmpty ? nil : ib.baseAddress
                    nonisolated(unsafe) let gs = gsb.baseAddress!  // safe: as the scales
                    nonisolated(unsafe) let gz = hasZero ? gzb.baseAddress : nil
                    nonisolated(unsafe) let g = gwb.isEmpty ? nil : gwb.baseAddress
                    forRows(threads: threads) { r0, r1 in
                      qopt_qdq_grad(c, s, z, w, m, d, r0, r1, cols, group, gpr, gs, gz, g)
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
  }

  package func clearGradients() {
    gradScale.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    gradZero.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    gradWeights?.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
  }

  /// One Adam step (β₁ 0.9, β₂ 0.999, ε 1e-8, bias-corrected, step `t` ≥ 1) with learning
  /// rate `lr` for scales and zero points and `weightLR` for the float weights.
  package func adam(t: Int, lr: Float, weightLR: Float) {
    let b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8
    let c1 = 1 - pow(b1, Float(t)), c2 = 1 - pow(b2, Float(t))
    func update(_ p: inout [Float], _ g: [Float], _ k: Int, _ rate: Float) {
      guard !p.isEmpty else { return }
      var m = moments[2 * k], v = moments[2 * k + 1]
      moments[2 * k] = []  // unique references while updated in place
      moments[2 * k + 1] = []
      p.withUnsafeMutableBufferPointer { pb in
        g.withUnsafeBufferPointer { gb in
          m.withUnsafeMutableBufferPointer { mb in
            v.withUnsafeMutableBufferPointer { vb in
              // safe: all four hold p.count floats
              qopt_adam(
                pb.baseAddress!, gb.baseAddress!, mb.baseAddress!, vb.baseAddress!, pb.count,
                rate, b1, b2, eps, c1, c2)
            }
          }
        }
      }
      moments[2 * k] = m
      moments[2 * k + 1] = v
    }
    update(&scale, gradScale, 0, lr)
    update(&zero, gradZero, 1, lr)
    if var w = weights, let g = gradWeights {
      weights = nil  // unique reference while updated in place
      update(&w, g, 2, weightLR)
      weights = w
    }
  }

  /// The scales and zero points as `freeze` stores them: scales rounded to the scheme's scale
  /// dtype, zero points to integers in the int8 range.
  private var storedScaleAndZero: ([Float], [Float]) {
    let shape = perTensor ? [1] : [rows, groupsPerRow]
    let s = TensorData(floats: scale, shape: shape, as: scheme.scaleType).floats()
    return (s, zero.map { min(max($0.rounded(.toNearestOrEven), -128), 127) })
  }

  /// Writes the `ŵ` that `freeze` would store (the scales and zero points rounded as stored;
  /// with trained weights the codes re-rounded with them) into `out`: what validation measures.
  /// Leaves the parameters as they are; the codes and clamp mask of trained weights are those
  /// of the rounded values until the next `qdq`.
  package func qdqStored(into out: UnsafeMutablePointer<Float>, threads: Int = 1) {
    let (trainedScale, trainedZero) = (scale, zero)
    (scale, zero) = storedScaleAndZero
    qdq(into: out, threads: threads)
    (scale, zero) = (trainedScale, trainedZero)
  }

  /// The trained parameters (scales, zero points, weights; no Adam moments): what `finetune`
  /// keeps of its best validation step.
  package var parameters: [[Float]] {
    get { [scale, zero, weights ?? []] }
    set {
      scale = newValue[0]
      zero = newValue[1]
      if weights != nil { weights = newValue[2] }
    }
  }

  /// The codes, scales and zero points to store: scales rounded to the scheme's scale dtype,
  /// zero points to integers, and (with trained weights) the codes re-rounded from the trained
  /// weights with those stored values, so the frozen weight is exactly what the IR holds.
  package func freeze() -> QuantizedTensor {
    let shape = perTensor ? [1] : [rows, groupsPerRow]
    let st = TensorData(floats: scale, shape: shape, as: scheme.scaleType)
    let (s, z) = storedScaleAndZero
    var out = codes
    if let w = weights {
      for r in 0..<rows {
        for c in 0..<cols {
          let g = group(r, c), i = r * cols + c
          let x = (w[i] / s[g] + (z.isEmpty ? 0 : z[g])).rounded(.toNearestOrEven)
          out[i] = Int8(min(max(x, qmin), qmax))
        }
      }
    }
    return QuantizedTensor(
      scheme: .int(scheme), codes: TensorData(int8: out, shape: [rows, cols]), scale: st,
      zeroPoint: z.isEmpty ? nil : TensorData(int8: z.map { Int8($0) }, shape: shape))
  }

  /// Every trained value (parameters, then Adam's moments), for checkpoints.
  var state: [[Float]] {
    get { [scale, zero, weights ?? []] + moments }
    set {
      scale = newValue[0]
      zero = newValue[1]
      if weights != nil { weights = newValue[2] }
      moments = Array(newValue[3...])
    }
  }
}
