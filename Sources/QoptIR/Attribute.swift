/// A typed attribute value attached to an op or a module.
public indirect enum Attribute: Hashable, Sendable {
  case int(Int)
  case float(Double)
  case bool(Bool)
  case string(String)
  /// A reference to a symbol: a function (`@block.0`) or a weight (`@"model.norm.weight"`).
  case symbol(String)
  case array([Attribute])
  /// A type used as an attribute (for example the declared signature of an external kernel).
  case type(TensorType)

  public var intValue: Int? {
    if case .int(let v) = self { return v }
    return nil
  }
  /// A float attribute, or an int attribute widened to a double.
  public var doubleValue: Double? {
    switch self {
    case .float(let v): v
    case .int(let v): Double(v)
    default: nil
    }
  }
  public var boolValue: Bool? {
    if case .bool(let v) = self { return v }
    return nil
  }
  public var stringValue: String? {
    if case .string(let v) = self { return v }
    return nil
  }
  public var symbolValue: String? {
    if case .symbol(let v) = self { return v }
    return nil
  }
  public var arrayValue: [Attribute]? {
    if case .array(let v) = self { return v }
    return nil
  }
}

/// An attribute dictionary that keeps keys sorted, so printing is canonical.
public struct AttributeDict: Hashable, Sendable, Sequence {
  public private(set) var entries: [(key: String, value: Attribute)] = []

  public init() {}
  public init(_ pairs: [String: Attribute]) {
    for (k, v) in pairs { self[k] = v }
  }

  public subscript(key: String) -> Attribute? {
    get { entries.first(where: { $0.key == key })?.value }
    set {
      if let i = entries.firstIndex(where: { $0.key == key }) {
        if let newValue { entries[i].value = newValue } else { entries.remove(at: i) }
      } else if let newValue {
        let at = entries.firstIndex(where: { $0.key > key }) ?? entries.count
        entries.insert((key, newValue), at: at)
      }
    }
  }

  public var isEmpty: Bool { entries.isEmpty }
  public var keys: [String] { entries.map(\.key) }

  public func makeIterator() -> IndexingIterator<[(key: String, value: Attribute)]> {
    entries.makeIterator()
  }

  public static func == (a: AttributeDict, b: AttributeDict) -> Bool {
    a.entries.count == b.entries.count
      && zip(a.entries, b.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
  }
  public func hash(into h: inout Hasher) {
    for e in entries {
      h.combine(e.key)
      h.combine(e.value)
    }
  }
}
