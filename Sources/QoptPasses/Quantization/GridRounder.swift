import Dispatch
import QoptIR

/// A scheme's grid as an algorithm that rounds one column at a time sees it (GPTQ): the scales
/// of a group are fitted once, from the values its columns hold then, and each column is then
/// rounded onto the grid those scales define, its codes recorded for the final tensor.
///
/// Column `c` belongs to the group `c / groupWidth` of every row; a rounder whose scales span
/// more than one group of columns (one per tensor, NVFP4's global scale) takes them when it is
/// made. Every rounder writes exactly the codes and scales `rtn` would for the same values.
package protocol GridRounder {
  /// Columns sharing one scale along a row (the row length for one scale per row or tensor).
  var groupWidth: Int { get }
  /// Fits the scales of the group starting at column `first` from its current values: `values`
  /// is row-major `rows × width` (`width` = the group's columns, short at the row's end).
  mutating func fit(group first: Int, width: Int, values: UnsafePointer<Float>)
  /// Rounds column `c` (one value per row, in place) onto the grid of its group's scales,
  /// leaving the dequantized values, and records the codes.
  mutating func round(column c: Int, _ values: UnsafeMutablePointer<Float>)
  /// The codes and scales recorded so far, laid out as `rtn` stores the scheme.
  func result() -> QuantizedTensor
}

/// Integer codes under a `ScaleRule`, with `IntQuantizer`'s scale and zero-point rule per group.
package struct IntGridRounder: GridRounder {
  let quantizer: IntQuantizer
  let rows: Int, cols: Int
  package let groupWidth: Int
  private let groupsPerRow: Int
  private var scales: [Float], zeros: [Int8], codes: [Int8]
  /// One importance per column: when set, each group's scale is `ImportanceWeightedScale`'s
  /// (sym full-range only), not the rule's.
  let importance: [Float]?
  /// Workers for the importance-weighted search (rows are independent).
  let threads: Int

  package init(
    quantizer: IntQuantizer, rows: Int, cols: Int, importance: [Float]? = nil, threads: Int = 1
  ) {
    precondition(
      importance == nil
        || (quantizer.scheme.symmetric && quantizer.rule == .fullRange
          && importance?.count == cols && quantizer.scheme.granularity != .tensor),
      "importance-weighted scales: sym full-range, per row or group, one importance per column")
    self.quantizer = quantizer
    self.importance = importance
    self.threads = max(1, threads)
    self.rows = rows
    self.cols = cols
    let g = quantizer.scheme.granularity
    groupsPerRow = g == .tensor ? 1 : g.groupsPerRow(columns: cols)
    groupWidth = if case .group(let n) = g, groupsPerRow > 1 { n } else { cols }
    let n = g == .tensor ? 1 : rows * groupsPerRow
    scales = [Float](repeating: 1, count: n)
    zeros = [Int8](repeating: 0, count: n)
    codes = [Int8](repeating: 0, count: rows * cols)
  }

  package mutating func fit(group first: Int, width: Int, values: UnsafePointer<Float>) {
    var scratch = [Int8](
      repeating: 0, count: quantizer.scheme.granularity == .tensor ? rows * width : width)
    let g = first / groupWidth
    if let importance {
      let (bits, st, gpr, rows) = (
        quantizer.scheme.bits, quantizer.scheme.scaleType, groupsPerRow, rows
      )
      let workers = min(threads, rows)
      importance.withUnsafeBufferPointer { imp in
        scales.withUnsafeMutableBufferPointer { sb in
          // safe: both non-empty (cols > 0, rows > 0); each worker writes its own rows.
          nonisolated(unsafe) let ip = imp.baseAddress! + first
          nonisolated(unsafe) let sp = sb.baseAddress!
          nonisolated(unsafe) let vp = values
          DispatchQueue.concurrentPerform(iterations: workers) { t in
            for r in (rows * t / workers)..<(rows * (t + 1) / workers) {
              let row = UnsafeBufferPointer(start: vp + r * width, count: width)
              sp[r * gpr + g] = ImportanceWeightedScale.search(
                row, importance: ip, bits: bits, scaleType: st)
            }
          }
        }
      }
      return
    }
    scratch.withUnsafeMutableBufferPointer { q in
      if quantizer.scheme.granularity == .tensor {
        (scales[0], zeros[0]) = quantizer.quantizeGroup(
          UnsafeBufferPointer(start: values, count: rows * width), into: q)
        return
      }
      for r in 0..<rows {
        let row = UnsafeBufferPointer(start: values + r * width, count: width)
        (scales[r * groupsPerRow + g], zeros[r * groupsPerRow + g]) = quantizer.quantizeGroup(
          row, into: q)
      }
    }
  }

  package mutating func round(column c: Int, _ values: UnsafeMutablePointer<Float>) {
    let g = c / groupWidth
    let perTensor = quantizer.scheme.granularity == .tensor
    for r in 0..<rows {
      let gi = perTensor ? 0 : r * groupsPerRow + g
      let (s, z) = (scales[gi], zeros[gi])
      let q = quantizer.code(values[r], scale: s, zero: z)
      codes[r * cols + c] = q
      values[r] = s * (Float(q) - Float(z))
    }
  }

  package func result() -> QuantizedTensor {
    let s = quantizer.scheme
    let shape = s.granularity == .tensor ? [1] : [rows, groupsPerRow]
    return QuantizedTensor(
      scheme: .int(s), codes: TensorData(int8: codes, shape: [rows, cols]),
      scale: TensorData(floats: scales, shape: shape, as: s.scaleType),
      zeroPoint: s.symmetric ? nil : TensorData(int8: zeros, shape: shape))
  }
}

extension IntQuantizer {
  /// The code of one weight `w` under a group's scale `s` and stored zero point `z`, by the
  /// same rule `quantizeGroup` rounds a whole group with.
  @inline(__always)
  func code(_ w: Float, scale s: Float, zero z: Int8) -> Int8 {
    switch (rule, scheme.symmetric) {
    case (.fullRange, true):
      let maxq = Float(1 << (scheme.bits - 1))
      return Int8(Swift.min(Swift.max((w / s).rounded(.toNearestOrEven), -maxq), maxq - 1))
    case (.fullRange, false):
      // Codes 0…2^b−1 around the zero point, stored shifted by −2^(b−1) (as is `z`).
      let half = Float(1 << (scheme.bits - 1))
      let maxq = Float((1 << scheme.bits) - 1)
      let x = (w / s).rounded(.toNearestOrEven) + Float(z)
      return Int8(Swift.min(Swift.max(x, -half), maxq - half))
    case (.minmax, _):
      let st = scheme.scaleType
      let x = (st == .f32 ? w / s : roundFloat(w / s, to: st)) + Float(z)
      return Int8(
        Swift.min(Swift.max(x, Float(scheme.qmin)), Float(scheme.qmax)).rounded(.toNearestOrEven))
    }
  }
}

/// NVFP4 (`NVFP4Quantizer`'s rule): E2M1 codes, an E4M3 scale per 16 weights of a row fitted
/// from the group's values, and a global scale fixed when the rounder is made. With per-column
/// `importance` the group scale is searched instead: the E4M3 codes around the max-based one
/// (three below, three above), keeping the one with the least importance-weighted squared
/// error — the E4M3 counterpart of the integer grids' weighted search (ties keep the rule's).
package struct NVFP4GridRounder: GridRounder {
  let rows: Int, cols: Int
  let globalScale: Float
  let importance: [Float]?
  package let groupWidth = NVFP4Quantizer.groupSize
  private var scales: [UInt8], codes: [UInt8]

  package init(rows: Int, cols: Int, globalScale: Float, importance: [Float]? = nil) {
    self.rows = rows
    self.cols = cols
    self.globalScale = globalScale
    self.importance = importance
    scales = [UInt8](repeating: 0x38, count: rows * (cols / NVFP4Quantizer.groupSize))
    codes = [UInt8](repeating: 0, count: rows * cols)
  }

  package mutating func fit(group first: Int, width: Int, values: UnsafePointer<Float>) {
    let groups = cols / groupWidth
    for r in 0..<rows {
      var am: Float = 0
      for i in 0..<width { let a = abs(values[r * width + i]); am = a > am ? a : am }
      var sb = floatToE4M3(Swift.min(Swift.max(globalScale * (am / 6), -448), 448))
      if sb == 0 || sb == 0x80 { sb = 0x20 }  // an exact zero scale becomes 0.125
      if let importance, am > 0 {
        sb = searchedScale(
          around: sb, values: values + r * width, width: width, importance: importance, first: first
        )
      }
      scales[r * groups + first / groupWidth] = sb
    }
  }

  /// The E4M3 code within ±3 of `base` (positive, finite: 0x01…0x7E) whose grid gives the
  /// least Σ importance·(v − q)² over the group; `base` on ties.
  private func searchedScale(
    around base: UInt8, values: UnsafePointer<Float>, width: Int, importance: [Float], first: Int
  ) -> UInt8 {
    func loss(_ code: UInt8) -> Float {
      let step = e4m3ToFloat(code) / globalScale
      var e: Float = 0
      for i in 0..<width {
        let v = values[i]
        let d = v - e2m1ToFloat(floatToE2M1(Swift.min(Swift.max(v / step, -6), 6))) * step
        e += importance[first + i] * d * d
      }
      return e
    }
    var best = base
    var bestLoss = loss(base)
    for k in -3...3 where k != 0 {
      let c = Int(base) + k
      guard (0x01...0x7E).contains(c) else { continue }
      let l = loss(UInt8(c))
      if l < bestLoss { (best, bestLoss) = (UInt8(c), l) }
    }
    return best
  }

  package mutating func round(column c: Int, _ values: UnsafeMutablePointer<Float>) {
    let groups = cols / groupWidth
    for r in 0..<rows {
      let step = e4m3ToFloat(scales[r * groups + c / groupWidth]) / globalScale
      let q = floatToE2M1(Swift.min(Swift.max(values[r] / step, -6), 6))
      codes[r * cols + c] = q
      values[r] = e2m1ToFloat(q) * step
    }
  }

  package func result() -> QuantizedTensor {
    QuantizedTensor(
      scheme: .nvfp4(group: groupWidth),
      codes: TensorData(dtype: .i8, shape: [rows, cols], bytes: codes),
      scale: TensorData(dtype: .f8e4m3, shape: [rows, cols / groupWidth], bytes: scales),
      globalScale: TensorData(floats: [globalScale], shape: [1]))
  }
}

/// FP8 E4M3 (`FP8Quantizer`'s rule): `scale = amax / 448` per group, row or tensor.
package struct FP8GridRounder: GridRounder {
  let rows: Int, cols: Int
  let granularity: Granularity
  package let groupWidth: Int
  private let groupsPerRow: Int
  private var scales: [Float], codes: [UInt8]

  package init(rows: Int, cols: Int, granularity: Granularity) {
    self.rows = rows
    self.cols = cols
    self.granularity = granularity
    groupWidth = if case .group(let n) = granularity { n } else { cols }
    groupsPerRow = granularity == .tensor ? 1 : (cols + groupWidth - 1) / groupWidth
    scales = [Float](repeating: 1, count: granularity == .tensor ? 1 : rows * groupsPerRow)
    codes = [UInt8](repeating: 0, count: rows * cols)
  }

  package mutating func fit(group first: Int, width: Int, values: UnsafePointer<Float>) {
    func scale(_ amax: Float) -> Float { amax == 0 ? Float.ulpOfOne : amax / 448 }
    if granularity == .tensor {
      var am: Float = 0
      for i in 0..<(rows * width) { am = Swift.max(am, abs(values[i])) }
      scales[0] = scale(am)
      return
    }
    for r in 0..<rows {
      var am: Float = 0
      for i in 0..<width { am = Swift.max(am, abs(values[r * width + i])) }
      scales[r * groupsPerRow + first / groupWidth] = scale(am)
    }
  }

  package mutating func round(column c: Int, _ values: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
      let s = granularity == .tensor ? scales[0] : scales[r * groupsPerRow + c / groupWidth]
      let q = floatToE4M3(Swift.min(Swift.max(values[r] / s, -448), 448))
      codes[r * cols + c] = q
      values[r] = e4m3ToFloat(q) * s
    }
  }

  package func result() -> QuantizedTensor {
    QuantizedTensor(
      scheme: .fp8(granularity),
      codes: TensorData(dtype: .f8e4m3, shape: [rows, cols], bytes: codes),
      scale: TensorData(floats: scales, shape: granularity == .tensor ? [1] : [rows, groupsPerRow]))
  }
}
