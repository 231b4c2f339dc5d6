import QoptFormats
import QoptIR

extension GGUFEmitter {
  /// What a GGUF file holds from a quantized weight: ggml blocks and integer codes (NVFP4 and FP8 have no
  /// GGUF form here). With the default `-emit=gguf` an integer weight that fits no block type
  /// exactly is written as f32; a quantized default type (library use) needs rows and groups
  /// aligned to its 32-value blocks. A llama-quantize mix takes anything: what its type cannot
  /// hold exactly is requantized from the dequantized values (with a remark).
  public func refusal(name: String, shape: [Int], scheme: QuantScheme) -> String? {
    if types.mix != nil { return nil }
    if case .ggml = scheme { return nil }  // written as its blocks (or decoded, for f32)
    guard case .int(let s) = scheme else {
      return "scheme \(Printer.scheme(scheme)) has no exact GGUF form in this backend"
    }
    guard let t = types.defaultType, t.isQuantized, shape.count == 2 else { return nil }
    if types.overrides.contains(where: { GGUFTypeSelection.matches($0.pattern, name) }) {
      return nil
    }
    guard shape[1] % 32 == 0 else {
      return "row length \(shape[1]) is not a multiple of the \(t.name) block (32)"
    }
    if case .group(let g) = s.granularity, g % 32 != 0 {
      return
        "group size \(g) does not align with \(t.name)'s 32-value blocks (needs a multiple of 32)"
    }
    return nil
  }
}
