import CQoptCodecs
import Dispatch
import QoptIR

/// How a symmetric integer scale is derived from a group's range.
public enum ScaleRule: String, Sendable, CaseIterable {
  /// auto-round / llama.cpp: the largest-magnitude weight maps to −2^(b−1) (signed scale).
  case fullRange = "full-range"
  /// compressed-tensors / llmcompressor: scale = amax / ((qmax − qmin) / 2), zero point
  /// `qmin − min/scale` when asymmetric.
  case minmax
}

/// Round-to-nearest integer quantization of a row-major `[rows, cols]` f32 matrix, bit-identical
/// to the reference rule it names (see docs/passes.md, `rtn`).
///
/// Complexity: one pass over the weights per group (min/max) and one to round; rows are split
/// across `threads` workers. Memory: the i8 codes plus one scale (and zero point) per group.
public struct IntQuantizer: Sendable {
  public var scheme: IntScheme
  public var rule: ScaleRule

  public init(scheme: IntScheme, rule: ScaleRule) {
    self.scheme = scheme
    self.rule = rule
  }

  /// auto-round's `q_scale_thresh`, the smallest scale magnitude of the full-range rules: 1e-5
  /// (rounded to the scale dtype) for f16/bf16 scales, 1e-8 for f32 scales (autoround.md §3).
  static func scaleThreshold(_ scaleType: DType) -> Float {
    scaleType == .f32 ? 1e-8 : roundFloat(1e-5, to: scaleType)
  }

  /// Rows a worker asks its row source for at once.
  static let rowBlock = 16

  /// Quantizes `weights` (`rows × cols` floats) into codes, scales and zero points.
  public func quantize(_ weights: UnsafeBufferPointer<Float>, rows: Int, cols: Int, threads: Int = 1) -> QuantizedTensor {
    precondition(weights.count == rows * cols, "weight count")
    if scheme.granularity == .tensor {
      // One group spanning the whole tensor.
      var codes = [Int8](repeating: 0, count: rows * cols)
      let (s, z) = codes.withUnsafeMutableBufferPointer { quantizeGroup(weights, into: $0) }
      return pack(codes: codes, shape: [rows, cols], scales: [s], zeros: [z], scaleShape: [1])
    }
    nonisolated(unsafe) let w = weights
    return quantize(rows: rows, cols: cols, threads: threads) { range, scratch in
      w.baseAddress.map { UnsafePointer($0 + range.lowerBound * cols) } ?? UnsafePointer(scratch)
    }
  }

  /// Per-row or per-group quantization with rows supplied by `row(range, scratch)` — a pointer
  /// to those rows' floats (`cols` each, consecutive), in place or written into `scratch`
  /// (room for `rowBlock` rows) — so a tensor decoded on first
  /// use is read a row at a time and never held whole in f32.
  public func quantize(
    rows: Int, cols: Int, threads: Int = 1, row: @Sendable (Range<Int>, UnsafeMutablePointer<Float>) -> UnsafePointer<Float>
  ) -> QuantizedTensor {
    let groupsPerRow = scheme.granularity.groupsPerRow(columns: cols)
    precondition(scheme.granularity != .tensor, "per-tensor quantization needs the whole tensor")
    let groupSize = groupsPerRow == 1 ? cols : { if case .group(let n) = scheme.granularity { return n } else { return cols } }()
    // The symmetric full-range rule (rtn's default) goes a row per C call: calling C three
    // times a group from Swift cost as much as the rounding itself. Its 4-bit codes are held
    // two to a byte (`TensorData(int4Nibbles:shape:)`): half the memory, and compressed-tensors'
    // packed words as they are.
    let rowRule = rule == .fullRange && scheme.symmetric
    let nibbles = rowRule && scheme.bits == 4 && cols % 2 == 0
    let rowBytes = nibbles ? cols / 2 : cols
    let codesData = TensorData.buildInParallel(dtype: nibbles ? .u8 : .i8, shape: [rows, rowBytes])
    var scales = [Float](repeating: 0, count: rows * groupsPerRow)
    var zeros = [Int8](repeating: 0, count: rows * groupsPerRow)
    codesData.withUnsafeBytes { raw in
      nonisolated(unsafe) let codesPtr = UnsafeMutablePointer(mutating: raw.baseAddress!.assumingMemoryBound(to: Int8.self))  // safe: rows*cols > 0 here
      nonisolated(unsafe) let sPtr = scales.withUnsafeMutableBufferPointer { $0.baseAddress! }  // safe: non-empty
      nonisolated(unsafe) let zPtr = zeros.withUnsafeMutableBufferPointer { $0.baseAddress! }  // safe: non-empty
      let workers = max(1, min(threads, rows))
      let q = self
      let scaleCode: Int32 = scheme.scaleType == .f16 ? 1 : scheme.scaleType == .bf16 ? 2 : 0
      let thresh = IntQuantizer.scaleThreshold(scheme.scaleType)
      let bits = Int32(scheme.bits)
      DispatchQueue.concurrentPerform(iterations: workers) { t in
        let lo = rows * t / workers
        let hi = rows * (t + 1) / workers
        codesData.populateForWriting((lo * rowBytes)..<(hi * rowBytes))
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(cols, 1) * IntQuantizer.rowBlock)
        let rowCodes = UnsafeMutablePointer<Int8>.allocate(capacity: nibbles ? cols : 1)
        defer {
          scratch.deallocate()
          rowCodes.deallocate()
        }
        var block = lo..<lo
        var base = UnsafePointer(scratch)
        for r in lo..<hi {
          if !block.contains(r) {
            // Rows come a block at a time: a decoder's per-call cost is paid once per block.
            block = r..<Swift.min(hi, r + IntQuantizer.rowBlock)
            base = row(block, scratch)
          }
          let w = base + (r - block.lowerBound) * cols
          if nibbles {
            qopt_int_rtn_sym_row(
              w, cols, groupSize, bits, scaleCode, thresh, rowCodes, sPtr + r * groupsPerRow, 0)
            let out = UnsafeMutableRawPointer(codesPtr + r * rowBytes)
            qopt_pack_int4(rowCodes, cols, out.assumingMemoryBound(to: UInt8.self), 0)
            continue
          }
          if rowRule {
            qopt_int_rtn_sym_row(
              w, cols, groupSize, bits, scaleCode, thresh, codesPtr + r * cols,
              sPtr + r * groupsPerRow, 0)
            continue
          }
          for g in 0..<groupsPerRow {
            let start = g * groupSize
            let end = min(cols, start + groupSize)
            let src = UnsafeBufferPointer(start: w + start, count: end - start)
            let dst = UnsafeMutableBufferPointer(start: codesPtr + r * cols + start, count: end - start)
            let (s, z) = q.quantizeGroup(src, into: dst)
            sPtr[r * groupsPerRow + g] = s
            zPtr[r * groupsPerRow + g] = z
          }
        }
      }
    }
    let codes = nibbles ? TensorData(int4Nibbles: codesData, shape: [rows, cols]) : codesData
    return pack(codesData: codes, scales: scales, zeros: zeros, scaleShape: [rows, groupsPerRow])
  }

  private func pack(codes: [Int8], shape: [Int], scales: [Float], zeros: [Int8], scaleShape: [Int]) -> QuantizedTensor {
    pack(codesData: TensorData(int8: codes, shape: shape), scales: scales, zeros: zeros, scaleShape: scaleShape)
  }

  private func pack(codesData: TensorData, scales: [Float], zeros: [Int8], scaleShape: [Int]) -> QuantizedTensor {
    QuantizedTensor(
      scheme: .int(scheme), codes: codesData,
      scale: TensorData(floats: scales, shape: scaleShape, as: scheme.scaleType),
      zeroPoint: scheme.symmetric ? nil : TensorData(int8: zeros, shape: scaleShape))
  }

  /// Quantizes one group; returns its scale (already rounded to the scale dtype) and zero point.
  @inline(__always)
  public func quantizeGroup(_ w: UnsafeBufferPointer<Float>, into q: UnsafeMutableBufferPointer<Int8>) -> (Float, Int8) {
    let (lo, hi) = IntQuantizer.range(w)
    let st = scheme.scaleType
    switch (rule, scheme.symmetric) {
    case (.fullRange, true):
      // auto-round quant_tensor_rtn_sym: signed scale, larger side maps to −2^(b−1).
      let maxq = Float(1 << (scheme.bits - 1))
      let wminAbs = -lo
      let maxv = hi < wminAbs ? wminAbs : -hi
      var s = roundFloat(maxv / maxq, to: st)
      let thresh = IntQuantizer.scaleThreshold(st)
      s = s < 0 ? Swift.min(s, -thresh) : Swift.max(s, thresh)
      roundDivided(w, by: s, plus: 0, into: q, clampBefore: nil, clampAfter: (-maxq, maxq - 1), wmax: Swift.max(-lo, hi))
      return (s, 0)
    case (.fullRange, false):
      // auto-round quant_tensor_asym: codes 0…2^b−1 around zp; stored shifted by −2^(b−1).
      let maxq = Float((1 << scheme.bits) - 1)
      let half = Float(1 << (scheme.bits - 1))
      var s = roundFloat((hi - lo) / maxq, to: st)
      s = Swift.max(s, IntQuantizer.scaleThreshold(st))
      let zp = (-lo / s).rounded(.toNearestOrEven)
      // round(w/s) + zp, clamped to [0, maxq], then shifted by −half: clamp in the shifted range.
      roundDivided(w, by: s, plus: zp - half, into: q, clampBefore: nil, clampAfter: (-half, maxq - half), wmax: Swift.max(-lo, hi))
      return (s, Int8(Swift.min(Swift.max(zp - half, -128), 127)))
    case (.minmax, let sym):
      // compressed-tensors calculate_qparams + _quantize: clamp first, then round half to even.
      let qmin = Float(scheme.qmin)
      let qmax = Float(scheme.qmax)
      let eps: Float = st == .bf16 ? 0.0078125 : st == .f16 ? 0.0009765625 : Float.ulpOfOne
      var s: Float
      var zp: Float = 0
      if sym {
        s = roundFloat(Swift.max(-lo, hi) / ((qmax - qmin) / 2), to: st)
      } else {
        s = roundFloat((hi - lo) / (qmax - qmin), to: st)
      }
      if s == 0 { s = eps }
      if !sym { zp = Swift.min(Swift.max(qmin - roundFloat(lo / s, to: st), qmin), qmax).rounded(.toNearestOrEven) }
      if st == .f32 {
        roundDivided(w, by: s, plus: zp, into: q, clampBefore: (qmin, qmax), clampAfter: nil, wmax: Swift.max(-lo, hi))
      } else {
        // The reference divides in the scale's dtype: round each quotient to it first.
        for i in 0..<w.count {
          let x = roundFloat(w[i] / s, to: st) + zp
          q[i] = Int8(Swift.min(Swift.max(x, qmin), qmax).rounded(.toNearestOrEven))
        }
      }
      return (s, Int8(zp))
    }
  }

  /// min(min(w), 0) and max(max(w), 0) (C, eight lanes at a time where the CPU has AVX2: a
  /// scalar loop is latency-bound on the min/max dependency chain).
  @inline(__always)
  static func range(_ w: UnsafeBufferPointer<Float>) -> (Float, Float) {
    guard let p = w.baseAddress else { return (0, 0) }
    var lo: Float = 0, hi: Float = 0
    qopt_int_range(p, w.count, &lo, &hi, 0)
    return (lo, hi)
  }

  /// `q[i] = clampAfter(roundHalfEven(clampBefore(w[i] / s) + …))` in C (CQoptCodecs, AVX2+FMA
  /// where the CPU has it, bit-identical to its portable body; `wmax` = max |w|, from the range
  /// pass, tells it the reciprocal path cannot overflow): rounding uses the 1.5·2^23 trick
  /// (exact round-half-even for |x| < 2^22). `plus` is added after rounding when `clampBefore`
  /// is nil (auto-round adds the zero point to the rounded code) and before it otherwise
  /// (compressed-tensors adds it before clamping and rounding).
  @inline(__always)
  func roundDivided(
    _ w: UnsafeBufferPointer<Float>, by s: Float, plus: Float, into q: UnsafeMutableBufferPointer<Int8>,
    clampBefore: (Float, Float)?, clampAfter: (Float, Float)?, wmax: Float
  ) {
    guard let wp = w.baseAddress, let qp = q.baseAddress else { return }
    if let (lo, hi) = clampBefore {
      qopt_int_round_clamp_before(wp, w.count, s, plus, lo, hi, wmax, qp, 0)
    } else if let (lo, hi) = clampAfter {
      qopt_int_round_clamp_after(wp, w.count, s, plus, lo, hi, wmax, qp, 0)
    }
  }
}

