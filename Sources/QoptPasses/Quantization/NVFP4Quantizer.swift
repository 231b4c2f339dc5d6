import Dispatch
import QoptIR

/// NVFP4 weight quantization as compressed-tensors / llmcompressor compute it: E2M1 codes in
/// groups of 16 along a row, E4M3 group scales, one f32 global scale (docs/formats.md §NVFP4).
///
///     gs   = (1 / amax) · 2688            (f32 reciprocal then multiply, as the reference)
///     s_g  = e4m3(clamp(gs · (amax_g / 6), ±448)), an exact 0 becomes 0.125
///     code = E2M1(clamp(w / (s_g / gs), ±6))
public enum NVFP4Quantizer {
  public static let groupSize = 16

  /// The global scale of a tensor (or fused set) whose largest magnitude is `amax`.
  public static func globalScale(amax: Float) -> Float {
    let gs = (1 / Swift.max(amax, Float.leastNormalMagnitude)) * 2688
    return gs.isFinite ? gs : 1
  }

  /// max |w|.
  public static func amax(_ w: UnsafeBufferPointer<Float>) -> Float {
    var m: Float = 0
    for x in w { let a = abs(x); m = a > m ? a : m }
    return m
  }

  /// Quantizes `rows × cols` weights (cols a multiple of 16) with global scale `gs` (the
  /// tensor's own when nil).
  public static func quantize(_ w: UnsafeBufferPointer<Float>, rows: Int, cols: Int, globalScale gs: Float? = nil, threads: Int = 1) -> QuantizedTensor {
    precondition(cols % groupSize == 0 && w.count == rows * cols, "nvfp4 shape")
    let g = gs ?? globalScale(amax: amax(w))
    let groups = cols / groupSize
    var scales = [UInt8](repeating: 0, count: rows * groups)
    let codes = TensorData.build(dtype: .i8, shape: [rows, cols]) { raw in
      nonisolated(unsafe) let q = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)  // safe: non-empty
      nonisolated(unsafe) let sp = scales.withUnsafeMutableBufferPointer { $0.baseAddress! }  // safe: non-empty
      nonisolated(unsafe) let wp = w.baseAddress!  // safe: non-empty
      let workers = max(1, min(threads, rows))
      DispatchQueue.concurrentPerform(iterations: workers) { t in
        for r in (rows * t / workers)..<(rows * (t + 1) / workers) {
          for gi in 0..<groups {
            let base = r * cols + gi * groupSize
            var am: Float = 0
            for i in 0..<groupSize { let a = abs(wp[base + i]); am = a > am ? a : am }
            var sb = floatToE4M3(Swift.min(Swift.max(g * (am / 6), -448), 448))
            if sb == 0 || sb == 0x80 { sb = 0x20 }  // an exact zero scale becomes 0.125
            sp[r * groups + gi] = sb
            let step = e4m3ToFloat(sb) / g
            for i in 0..<groupSize {
              let x = Swift.min(Swift.max(wp[base + i] / step, -6), 6)
              q[base + i] = floatToE2M1(x)
            }
          }
        }
      }
    }
    return QuantizedTensor(
      scheme: .nvfp4(group: groupSize), codes: codes,
      scale: TensorData(dtype: .f8e4m3, shape: [rows, groups], bytes: scales),
      globalScale: TensorData(floats: [g], shape: [1]))
  }
}
