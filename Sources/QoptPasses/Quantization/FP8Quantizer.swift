import QoptIR

/// FP8 E4M3 weight quantization as compressed-tensors computes it (`float-quantized`):
/// `scale = amax / 448` per tensor, row or group (an exact 0 becomes f32 epsilon), codes
/// `e4m3(clamp(w / scale, ±448))` rounded to nearest even.
public enum FP8Quantizer {
  public static func quantize(_ w: UnsafeBufferPointer<Float>, rows: Int, cols: Int, granularity: Granularity) -> QuantizedTensor {
    let groupSize: Int = switch granularity {
    case .tensor: rows * cols
    case .channel: cols
    case .group(let n): n
    }
    let perRow = granularity == .tensor ? 1 : (cols + groupSize - 1) / groupSize
    let scaleCount = granularity == .tensor ? 1 : rows * perRow
    var scales = [Float](repeating: 0, count: scaleCount)
    for si in 0..<scaleCount {
      let (r, g) = granularity == .tensor ? (0, 0) : (si / perRow, si % perRow)
      let lo = granularity == .tensor ? 0 : r * cols + g * groupSize
      let hi = granularity == .tensor ? rows * cols : r * cols + min(cols, (g + 1) * groupSize)
      var amax: Float = 0
      for i in lo..<hi { amax = max(amax, abs(w[i])) }
      let s = amax / 448
      scales[si] = s == 0 ? Float.ulpOfOne : s
    }
    let codes = TensorData.build(dtype: .f8e4m3, shape: [rows, cols]) { raw in
      for i in 0..<(rows * cols) {
        let si = granularity == .tensor ? 0 : (i / cols) * perRow + (i % cols) / groupSize
        raw[i] = floatToE4M3(min(max(w[i] / scales[si], -448), 448))
      }
    }
    let scaleShape = granularity == .tensor ? [1] : [rows, perRow]
    return QuantizedTensor(scheme: .fp8(granularity), codes: codes, scale: TensorData(floats: scales, shape: scaleShape))
  }
}
