import QoptIR

/// The dtype directory backends (compressed-tensors, safetensors) write unquantized tensors in.
///
/// The importers hold every weight as f32; writing them back as f32 would double a bf16
/// checkpoint's size and differ from what llm-compressor and transformers write. `source`
/// (the default) writes each tensor in the precision of the checkpoint it came from — bf16
/// stays bf16, f16 stays f16 — and a tensor whose source was not a float (a GGUF Q4_1
/// embedding table) in the model's `torch_dtype` when the source config names a 16-bit one,
/// else f16 (what llama.cpp's converter writes). f32 is written only when asked.
public enum DenseDType: String, CaseIterable, Sendable {
  case source, f32, f16, bf16

  /// The dtype for a float tensor now held as `current`, read from a checkpoint that stored it
  /// as `sourceType` (nil: built in memory, keep `current`).
  func resolve(sourceType: String?, current: DType, fallback: DType) -> DType {
    switch self {
    case .f32: return .f32
    case .f16: return .f16
    case .bf16: return .bf16
    case .source:
      guard let sourceType else { return current }
      switch sourceType.lowercased() {
      case "f32": return .f32
      case "f16": return .f16
      case "bf16": return .bf16
      default: return fallback
      }
    }
  }

  /// The 16-bit fallback for tensors whose source was not a float: the source config's
  /// `torch_dtype` when it is one, else f16.
  static func fallback(_ config: JSON) -> DType {
    config["torch_dtype"]?.stringValue == "bfloat16" ? .bf16 : .f16
  }

  /// The source storage type of every weight, from the `source_type` of its `param`.
  static func sourceTypes(_ module: Module) -> [String: String] {
    var out: [String: String] = [:]
    for op in module.allOps {
      if let n = op.paramName, let s = op.attributes["source_type"]?.stringValue { out[n] = s }
    }
    return out
  }

  /// transformers' name for a dtype in config.json's `torch_dtype`.
  static func torchName(_ d: DType) -> String? {
    switch d {
    case .f32: return "float32"
    case .f16: return "float16"
    case .bf16: return "bfloat16"
    default: return nil
    }
  }
}
