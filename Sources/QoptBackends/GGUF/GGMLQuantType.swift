import QoptFormats

/// Every ggml tensor type that llama-quantize's K-quant and legacy mixes can choose, with
/// ggml's ids (`enum ggml_type`); CQoptCodecs encodes and decodes all quantized ones
/// bit-exactly (`qopt_ggml_quantize`).
///
/// Separate from `GGMLType` (the types the GGUF emitter writes today) so that the mix table can
/// name the K-quants before the emitter writes them; `emitterType` bridges the two.
public enum GGMLQuantType: UInt32, Sendable, CaseIterable {
  case f32 = 0
  case f16 = 1
  case q4_0 = 2
  case q4_1 = 3
  case q5_0 = 6
  case q5_1 = 7
  case q8_0 = 8
  case q2_k = 10
  case q3_k = 11
  case q4_k = 12
  case q5_k = 13
  case q6_k = 14
  case iq4_nl = 20
  case iq4_xs = 23
  case bf16 = 30

  /// Elements per block (`ggml_blck_size`; 1 for the float types).
  public var blockSize: Int {
    switch self {
    case .f32, .f16, .bf16: 1
    case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .iq4_nl: 32
    case .q2_k, .q3_k, .q4_k, .q5_k, .q6_k, .iq4_xs: 256
    }
  }

  /// Bytes per block (`ggml_type_size`).
  public var typeSize: Int {
    switch self {
    case .f32: 4
    case .f16, .bf16: 2
    case .q4_0, .iq4_nl: 18
    case .q4_1: 20
    case .q5_0: 22
    case .q5_1: 24
    case .q8_0: 34
    case .q2_k: 84
    case .q3_k: 110
    case .q4_k: 144
    case .q5_k: 176
    case .q6_k: 210
    case .iq4_xs: 136
    }
  }

  /// `ggml_is_quantized`.
  public var isQuantized: Bool { blockSize > 1 }

  /// ggml's name (`ggml_type_name`: `q4_K`, `iq4_nl`, `f32`).
  public var name: String {
    switch self {
    case .q2_k: "q2_K"
    case .q3_k: "q3_K"
    case .q4_k: "q4_K"
    case .q5_k: "q5_K"
    case .q6_k: "q6_K"
    default: "\(self)"
    }
  }

  /// By ggml's name, in any case (`Q4_K`, `q4_k`, `F32`).
  public init?(name: String) {
    guard let t = Self.allCases.first(where: { $0.name.lowercased() == name.lowercased() }) else {
      return nil
    }
    self = t
  }

  /// The same type as the emitter's `GGMLType`, where the emitter writes it.
  public var emitterType: GGMLType? { GGMLType(rawValue: rawValue) }
}
