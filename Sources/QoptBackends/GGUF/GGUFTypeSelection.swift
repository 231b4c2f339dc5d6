import QoptFormats
import QoptIR

/// Which ggml type each tensor gets: either one of llama-quantize's mixes (`mix`, the types
/// `GGUFMixes` chooses as `llama_tensor_get_type` does), or a default for 2-D weights; in both,
/// per-tensor overrides matched by name (Hugging Face or GGUF) or by `re:` regex, and F32 for
/// 1-D tensors (norms, biases) as llama.cpp keeps them.
public struct GGUFTypeSelection: Sendable {
  /// llama-quantize's mix (`-emit=gguf:q4_k_m`); when set, `defaultType` is ignored.
  public var mix: LlamaMix?
  /// With a mix: `--pure` (every quantizable tensor takes the mix's default type, then
  /// llama.cpp's row-length fallback).
  public var pure = false
  /// With a mix: `--leave-output-tensor` (`output.weight` keeps its source type).
  public var leaveOutputTensor = false
  /// The default for 2-D tensors; nil = `auto`: quantized weights take the smallest type that
  /// holds them exactly, float weights the type of the checkpoint they came from (a Q4_1 or
  /// Q8_0 embedding table of a GGUF source stays Q4_1 or Q8_0, a bf16 one bf16; a source type
  /// GGUF output cannot hold, such as Q6_K, becomes Q8_0), so `-emit=gguf` never inflates an
  /// embedding table to f32 that was not f32 to begin with.
  public var defaultType: GGMLType?
  /// `(pattern, type)` in command-line order; the last match wins.
  public var overrides: [(pattern: String, type: GGMLType)]

  public init(
    defaultType: GGMLType? = nil, mix: LlamaMix? = nil,
    overrides: [(pattern: String, type: GGMLType)] = []
  ) {
    self.defaultType = defaultType
    self.mix = mix
    self.overrides = overrides
  }

  /// Parses `NAME_OR_RE:TYPE` (the type after the last colon, so `re:` patterns work).
  public static func parseOverride(_ text: String) -> (pattern: String, type: GGMLType)? {
    guard let colon = text.lastIndex(of: ":") else { return nil }
    let pattern = String(text[..<colon])
    guard !pattern.isEmpty, let t = GGMLType(name: String(text[text.index(after: colon)...])) else {
      return nil
    }
    if pattern.hasPrefix("re:"), (try? NamePattern(String(pattern.dropFirst(3)))) == nil {
      return nil
    }
    return (pattern, t)
  }

  /// The type for a tensor named `hf` (`gguf` in the file) with `entry`'s shape and kind, read
  /// from a checkpoint that stored it as `sourceType` (nil: built in memory).
  func type(
    hf: String, gguf: String, entry: WeightStore.Entry, sourceType: String? = nil
  ) -> GGMLType {
    for (p, t) in overrides.reversed() where Self.matches(p, hf) || Self.matches(p, gguf) {
      return t
    }
    if entry.shape.count < 2 { return .f32 }
    if let d = defaultType { return d }
    switch entry {
    case .quantized(let q):
      // ggml blocks keep their type (the mixes decide in GGUFMixPlan).
      if case .ggml(let k) = q.scheme, let t = GGMLType(rawValue: UInt32(k.rawValue)) { return t }
      guard case .int(let s) = q.scheme else { return .f32 }
      for t in [GGMLType.q4_0, .q4_1, .q8_0] where s.bits <= 4 || t == .q8_0 {
        if PrequantizedBlocks.obstacle(q, as: t) == nil { return t }
      }
      return .f32
    case .dense(let t):
      if let sourceType {
        // Types whose encoding of their own decoded values is exact keep; a K-quant or IQ4 source
        // (not re-encoded losslessly) becomes Q8_0.
        if let s = GGMLType(name: sourceType), [.f32, .f16, .bf16, .q4_0, .q4_1, .q8_0].contains(s)
        {
          return s
        }
        if !["f32", "f16", "bf16"].contains(sourceType.lowercased()) { return .q8_0 }
      }
      switch t.dtype {
      case .f16: return .f16
      case .bf16: return .bf16
      default: return .f32
      }
    }
  }

  static func matches(_ pattern: String, _ name: String) -> Bool {
    if pattern.hasPrefix("re:") {
      // A search, not an anchored match: `re:ffn_down` selects every ffn_down tensor.
      guard let r = try? NamePattern(String(pattern.dropFirst(3))) else { return false }
      return r.search(name)
    }
    return pattern == name
  }
}
