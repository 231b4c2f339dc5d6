import CQoptCodecs
import QoptIR

/// The ggml tensor types qopt knows by id (`enum ggml_type`, `GGML_QUANT_SIZES`, ids from
/// `gguf.constants.GGMLQuantizationType`). The reader accepts all of them; `GGUFDequant` decodes
/// the float types and every `writable` one; the GGUF backend writes the `writable` ones,
/// encoding the quantized ones with llama.cpp's own codecs (`CQoptCodecs`, bit-exact with
/// `ggml_quantize_chunk`).
public enum GGMLType: UInt32, Sendable, CaseIterable {
  case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
  case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
  case iq4_nl = 20, iq4_xs = 23
  case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, bf16 = 30

  /// The types the GGUF backend encodes, in the order the command line lists them.
  public static let writable: [GGMLType] = [
    .f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K,
    .iq4_nl, .iq4_xs,
  ]

  /// Elements per block and bytes per block.
  public var blockLayout: (elements: Int, bytes: Int) {
    switch self {
    case .f32: (1, 4)
    case .f16, .bf16: (1, 2)
    case .q4_0, .iq4_nl: (32, 18)
    case .q4_1: (32, 20)
    case .q5_0: (32, 22)
    case .q5_1: (32, 24)
    case .q8_0: (32, 34)
    case .q8_1: (32, 36)
    case .q2_K: (256, 84)
    case .q3_K: (256, 110)
    case .q4_K: (256, 144)
    case .q5_K: (256, 176)
    case .q6_K: (256, 210)
    case .q8_K: (256, 292)
    case .iq4_xs: (256, 136)
    case .i8: (1, 1)
    case .i16: (1, 2)
    case .i32: (1, 4)
    case .i64, .f64: (1, 8)
    }
  }

  /// Elements per block (`ggml_blck_size`; 1 for the plain types).
  public var blockSize: Int { blockLayout.elements }

  /// Bytes per block (`ggml_type_size`).
  public var typeSize: Int { blockLayout.bytes }

  /// `ggml_is_quantized`.
  public var isQuantized: Bool { blockSize > 1 }

  /// Whether llama.cpp's codecs in `CQoptCodecs` encode and decode this type
  /// (`qopt_ggml_quantize`): every quantized `writable` type.
  public var hasGGMLCodec: Bool { isQuantized && Self.writable.contains(self) }

  /// The lowercase name used on the command line and recorded as a param's `source_type`
  /// (`q4_1`, `f16`, `q4_k`, `iq4_xs`, …).
  public var name: String {
    switch self {
    case .q2_K: "q2_k"
    case .q3_K: "q3_k"
    case .q4_K: "q4_k"
    case .q5_K: "q5_k"
    case .q6_K: "q6_k"
    case .q8_K: "q8_k"
    default: "\(self)"
    }
  }

  /// ggml's own spelling (`ggml_type_name`: `q4_K`, `iq4_nl`), as llama.cpp's logs print it.
  public var ggmlName: String { "\(self)" }

  /// The `writable` type called `name` (any case: `Q4_K`, `q4_k`), or nil.
  public init?(name: String) {
    guard let t = Self.writable.first(where: { $0.name == name.lowercased() }) else { return nil }
    self = t
  }

  /// `general.file_type` (llama_ftype) of a file whose dominant type this is, for files that
  /// are not one of llama-quantize's mixes (a mix records its own, `LlamaMix.fileType`); the
  /// K-quants name their `_S` mix, as llama.cpp's `llama_model_ftype_name` would guess.
  package var fileType: UInt32 {
    switch self {
    case .f32: 0
    case .f16: 1
    case .q4_0: 2
    case .q4_1: 3
    case .q8_0: 7
    case .q5_0: 8
    case .q5_1: 9
    case .q2_K: 10
    case .q3_K: 11
    case .q4_K: 14
    case .q5_K: 16
    case .q6_K: 18
    case .iq4_nl: 25
    case .iq4_xs: 30
    case .bf16: 32
    default: 0
    }
  }

  /// Bytes of a tensor of `count` elements (a multiple of `blockSize`).
  public func byteCount(elements count: Int) -> Int { count / blockSize * typeSize }

  /// llama.cpp's `tensor_type_fallback` (what both the mixes and `assign-schemes` apply):
  /// `GGMLBlockKind.fallback`, the one home of the rule, with F16 where it gives none.
  public func fallback(rowLength: Int) -> GGMLType {
    guard rowLength % blockSize != 0 else { return self }
    guard let kind = GGMLBlockKind(rawValue: Int(rawValue)) else {
      return rowLength % 32 == 0 && blockSize == 32 ? self : .f16
    }
    return kind.fallback(rowLength: rowLength).flatMap { GGMLType(rawValue: UInt32($0.rawValue)) }
      ?? .f16
  }
}
