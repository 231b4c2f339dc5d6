import CQoptCodecs

extension QuantizedTensor {
  /// The dequantized weights, `scale · (code − zeroPoint)`, row-major f32.
  public func dequantized() -> [Float] {
    let rows = shape[0]
    let cols = shape[1]
    switch scheme {
    case .int: break
    case .ggml(let k):
      // ggml's own `to_float`, so the runtime sees exactly what llama.cpp computes.
      var out = [Float](repeating: 0, count: rows * cols)
      guard rows > 0, cols > 0 else { return out }
      let rc = codes.withUnsafeBytes { src in
        out.withUnsafeMutableBufferPointer {
          qopt_ggml_dequantize(
            Int32(k.rawValue), src.baseAddress, $0.baseAddress, Int64(rows), Int64(cols))
        }
      }
      precondition(rc == 0, "ggml blocks of \(k.name) do not match the shape \(shape) (verifier)")
      return out
    case .nvfp4(let g):
      // value(code) · s_g / gs
      let gs = globalScale?.floats().first ?? 1
      let codes = self.codes.bytes
      let sc = scale.floats()
      var out = [Float](repeating: 0, count: rows * cols)
      for i in 0..<(rows * cols) {
        out[i] =
          e2m1ToFloat(codes[i]) * (sc[(i / cols) * ((cols + g - 1) / g) + (i % cols) / g] / gs)
      }
      return out
    case .fp8(let gran):
      let codes = self.codes.bytes
      let sc = scale.floats()
      var out = [Float](repeating: 0, count: rows * cols)
      for i in 0..<(rows * cols) {
        let si: Int =
          switch gran {
          case .tensor: 0
          case .channel: i / cols
          case .group(let n): (i / cols) * ((cols + n - 1) / n) + (i % cols) / n
          }
        out[i] = e4m3ToFloat(codes[i]) * sc[si]
      }
      return out
    }
    guard case .int(let s) = scheme else { return [] }
    let codes = self.codes.int8s()
    let scales = scale.floats()
    let zeros = zeroPoint?.int8s()
    var out = [Float](repeating: 0, count: rows * cols)
    let gpr = s.granularity.groupsPerRow(columns: cols)
    let gs: Int = if case .group(let n) = s.granularity { n } else { cols }
    for r in 0..<rows {
      for c in 0..<cols {
        let gi = s.granularity == .tensor ? 0 : r * gpr + c / gs
        let z = zeros.map { Float($0[gi]) } ?? 0
        out[r * cols + c] = scales[gi] * (Float(codes[r * cols + c]) - z)
      }
    }
    return out
  }
}
