import QoptIR

extension CompressedTensorsEmitter {
  /// What vLLM's compressed-tensors kernels load (the rules `plan` enforces on the finished
  /// module): int4/int8 codes in groups that divide the row or per channel, rows filling
  /// whole int32 words; NVFP4 rows a multiple of 16; FP8 per tensor, channel or dividing group.
  public func refusal(name: String, shape: [Int], scheme: QuantScheme) -> String? {
    guard shape.count == 2 else { return "only 2-D weights can be quantized in this format" }
    let cols = shape[1]
    switch scheme {
    case .int(let s):
      guard s.bits == 4 || s.bits == 8 else {
        return "\(s.bits)-bit codes cannot be loaded by vLLM's pack-quantized kernels (4 or 8 bits)"
      }
      switch s.granularity {
      case .group(let g) where cols % g != 0:
        return
          "group size \(g) does not divide the row of \(cols) columns; vLLM needs groups that divide the input dimension"
      case .tensor:
        return
          "per-tensor int scales are not supported by vLLM's pack-quantized kernels (use a group size or per channel)"
      default: break
      }
      guard cols % (32 / s.bits) == 0 else {
        return "\(cols) columns do not fill whole int32 words of \(s.bits)-bit codes"
      }
      return nil
    case .ggml(let k):
      return
        "\(k.name) is a ggml block format with no compressed-tensors form (emit it with -emit=gguf, or -emit=compressed-tensors with dequantize)"
    case .nvfp4:
      return cols % 16 == 0 ? nil : "NVFP4 rows must be a multiple of 16 (\(cols) columns)"
    case .fp8(let g):
      if case .group(let n) = g, cols % n != 0 {
        return
          "group size \(n) does not divide the row of \(cols) columns; vLLM needs groups that divide the input dimension"
      }
      return nil
    }
  }
}
