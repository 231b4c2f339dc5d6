import CQoptCodecs

/// A ggml block codec a weight can be held in, in the IR (`!q.ggml<q4_k>`): the weight's
/// storage is ggml's packed blocks themselves, so codes and scales are exactly what a GGUF file
/// holds and nothing is lost between a pass and the GGUF backend. Raw values are ggml's type ids
/// (`enum ggml_type`), so `GGMLType(rawValue:)` in QoptFormats maps one to the other.
///
/// The IR decodes these blocks itself (`QuantizedTensor.dequantized()`): the codecs live in
/// `CQoptCodecs`, a C target with no qopt dependencies, so QoptIR may import it without any
/// layer depending upward (docs/architecture.md).
public enum GGMLBlockKind: Int, Hashable, Sendable, CaseIterable {
  case q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8
  case q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14
  case iq4_nl = 20, iq4_xs = 23

  /// The lowercase name the IR text, `rtn<scheme=…>` and `-emit=gguf:…` use.
  public var name: String { "\(self)" }

  /// The kind called `name` (any case), or nil.
  public init?(name: String) {
    guard let k = Self.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
    self = k
  }

  /// Weights per block: 256 for the K-quants and IQ4_XS, 32 for the others.
  public var blockSize: Int {
    switch self {
    case .q2_k, .q3_k, .q4_k, .q5_k, .q6_k, .iq4_xs: 256
    default: 32
    }
  }

  /// Bytes of one row of `columns` weights (a multiple of `blockSize`).
  public func rowBytes(columns: Int) -> Int {
    qopt_ggml_row_size(Int32(rawValue), Int64(columns))
  }

  /// Bytes of one block.
  public var blockBytes: Int { rowBytes(columns: blockSize) }

  /// llama-quant.cpp's `tensor_type_fallback` for a row of `rowLength` weights the block does
  /// not divide: the 32-block type of about the same size (q2_k, q3_k → q4_0; q4_k → q5_0;
  /// q5_k → q5_1; q6_k → q8_0; iq4_xs → iq4_nl), or nil where llama.cpp writes F16 (32 does
  /// not divide the row either). `self` when the row fits.
  public func fallback(rowLength: Int) -> GGMLBlockKind? {
    guard rowLength % blockSize != 0 else { return self }
    let smaller: GGMLBlockKind =
      switch self {
      case .iq4_xs: .iq4_nl
      case .q2_k, .q3_k: .q4_0
      case .q4_k: .q5_0
      case .q5_k: .q5_1
      case .q6_k: .q8_0
      default: self
      }
    return rowLength % smaller.blockSize == 0 ? smaller : nil
  }

  /// Whether ggml's encoder reads importance weights for this type (Q8_0 ignores them).
  public var takesImportance: Bool { self != .q8_0 }
}
