/// How a group of weights shares one scale.
public enum Granularity: Hashable, Sendable {
  /// One scale for the whole tensor.
  case tensor
  /// One scale per output row.
  case channel
  /// One scale per `n` consecutive weights of a row; a row whose length `n` does not divide
  /// ends in a short group (as auto-round does it).
  case group(Int)

  /// Number of scale groups per row of `columns` weights (a per-tensor scheme reports 1).
  public func groupsPerRow(columns: Int) -> Int {
    switch self {
    case .tensor, .channel: 1
    case .group(let n): (columns + n - 1) / n
    }
  }
}

/// An integer quantization scheme: codes in `[-2^(b-1), 2^(b-1) - 1]`, dequantized as
/// `scale * (code - zeroPoint)`; symmetric schemes have no zero point.
public struct IntScheme: Hashable, Sendable {
  public var bits: Int
  public var symmetric: Bool
  public var granularity: Granularity
  /// The dtype scales are stored in (the reference tools use f16 or the model dtype).
  public var scaleType: DType

  public init(bits: Int, symmetric: Bool, granularity: Granularity, scaleType: DType) {
    self.bits = bits
    self.symmetric = symmetric
    self.granularity = granularity
    self.scaleType = scaleType
  }

  public var qmin: Int { -(1 << (bits - 1)) }
  public var qmax: Int { (1 << (bits - 1)) - 1 }
}

/// The scheme a quantized element type carries, so a dump shows what each weight became.
public enum QuantScheme: Hashable, Sendable {
  case int(IntScheme)
  /// FP4 E2M1 codes, E4M3 group scales, an f32 global scale.
  case nvfp4(group: Int)
  /// FP8 E4M3 codes with f32 scales.
  case fp8(Granularity)
  /// ggml's packed blocks (`!q.ggml<q4_k>`): the codes hold the block bytes, one row of
  /// blocks per weight row; there is no separate scale tensor (the scales are in the blocks).
  case ggml(GGMLBlockKind)
}

/// The element type of a tensor: a plain dtype or a quantized scheme.
public enum ElementType: Hashable, Sendable {
  case plain(DType)
  case quantized(QuantScheme)

  public var dtype: DType? {
    if case .plain(let d) = self { return d }
    return nil
  }
  public var scheme: QuantScheme? {
    if case .quantized(let s) = self { return s }
    return nil
  }
  public var isFloat: Bool { dtype?.isFloat ?? false }
}

/// A ranked tensor type; `nil` dimensions are dynamic (`?` in the text form).
public struct TensorType: Hashable, Sendable {
  public var shape: [Int?]
  public var element: ElementType

  public init(_ shape: [Int?], _ element: ElementType) {
    self.shape = shape
    self.element = element
  }

  public init(_ shape: [Int?], _ dtype: DType) {
    self.init(shape, .plain(dtype))
  }

  public var rank: Int { shape.count }
  public var isStatic: Bool { shape.allSatisfy { $0 != nil } }
  public var isQuantized: Bool { element.scheme != nil }

  /// Number of elements when every dimension is static.
  public var elementCount: Int? {
    var n = 1
    for d in shape {
      guard let d else { return nil }
      let (p, overflow) = n.multipliedReportingOverflow(by: d)
      if overflow { return nil }
      n = p
    }
    return n
  }

  /// Static dimensions as plain integers (dynamic ones read as -1).
  public var dims: [Int] { shape.map { $0 ?? -1 } }

  /// Whether two types can describe the same tensor: equal element types and ranks, and
  /// every dimension pair equal or one of them dynamic.
  public func isCompatible(with other: TensorType) -> Bool {
    guard element == other.element, rank == other.rank else { return false }
    return zip(shape, other.shape).allSatisfy { a, b in a == nil || b == nil || a == b }
  }

  /// The same shape with another element type.
  public func with(element: ElementType) -> TensorType { TensorType(shape, element) }
}
