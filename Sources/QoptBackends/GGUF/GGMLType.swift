/// The ggml tensor types the GGUF backend writes (ids from `gguf.constants.GGMLQuantizationType`).
public enum GGMLType: UInt32, Sendable, CaseIterable {
  case f32 = 0
  case f16 = 1
  case q4_0 = 2
  case q4_1 = 3
  case q8_0 = 8
  case bf16 = 30

  /// Elements per block (1 for the plain float types).
  public var blockSize: Int {
    switch self {
    case .f32, .f16, .bf16: 1
    case .q4_0, .q4_1, .q8_0: 32
    }
  }

  /// Bytes per block.
  public var typeSize: Int {
    switch self {
    case .f32: 4
    case .f16, .bf16: 2
    case .q4_0: 18
    case .q4_1: 20
    case .q8_0: 34
    }
  }

  public var isQuantized: Bool { blockSize > 1 }

  /// The lowercase name used on the command line (`q4_0`, `f16`, …).
  public var name: String {
    switch self {
    case .f32: "f32"
    case .f16: "f16"
    case .q4_0: "q4_0"
    case .q4_1: "q4_1"
    case .q8_0: "q8_0"
    case .bf16: "bf16"
    }
  }

  public init?(name: String) {
    guard let t = Self.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
    self = t
  }

  /// `general.file_type` (llama_ftype) of a file whose dominant type this is.
  var fileType: UInt32 {
    switch self {
    case .f32: 0
    case .f16: 1
    case .q4_0: 2
    case .q4_1: 3
    case .q8_0: 7
    case .bf16: 32
    }
  }

  /// Bytes of a tensor of `count` elements (a multiple of `blockSize`).
  public func byteCount(elements count: Int) -> Int { count / blockSize * typeSize }
}
