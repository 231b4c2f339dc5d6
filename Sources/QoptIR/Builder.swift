/// Creates ops at an insertion point, naming results uniquely within the function.
///
/// Passes build through the builder their `PassContext` hands them; tests and frontends use it
/// directly.
public struct Builder {
  public let function: Function
  /// Where the next op goes; `nil` appends at the end.
  public var insertionIndex: Int?

  public init(atEndOf function: Function) {
    self.function = function
  }

  public init(before op: Op) {
    // safe: an op handed to a builder belongs to a function.
    self.function = op.parent!
    self.insertionIndex = function.index(of: op)
  }

  public init(after op: Op) {
    self.function = op.parent!  // safe: as above.
    self.insertionIndex = function.index(of: op).map { $0 + 1 }
  }

  /// A value name not yet used in the function, derived from `hint`.
  public func freshName(_ hint: String) -> String {
    var used = Set(function.arguments.map(\.name))
    for op in function.body { if let r = op.result { used.insert(r.name) } }
    if !used.contains(hint) { return hint }
    var i = 1
    while used.contains("\(hint).\(i)") { i += 1 }
    return "\(hint).\(i)"
  }

  /// Creates and inserts an op; returns it.
  @discardableResult
  public mutating func create(
    _ name: String, _ operands: [Value] = [], result: TensorType?, named hint: String = "v",
    attributes: AttributeDict = AttributeDict()
  ) -> Op {
    let value = result.map { Value(name: freshName(hint), type: $0) }
    let op = Op(name, operands: operands, result: value, attributes: attributes)
    if let i = insertionIndex {
      function.insert(op, at: i)
      insertionIndex = i + 1
    } else {
      function.append(op)
    }
    return op
  }

  /// Creates a known op and returns its result.
  @discardableResult
  public mutating func op(
    _ kind: OpKind, _ operands: [Value], _ type: TensorType, named hint: String = "v",
    _ attributes: [String: Attribute] = [:]
  ) -> Value {
    // safe: a non-nil result type yields a result.
    create(kind.rawValue, operands, result: type, named: hint, attributes: AttributeDict(attributes))
      .result!
  }

  /// `%w = param @name : type`.
  public mutating func param(_ weight: String, _ type: TensorType, named hint: String = "w")
    -> Value
  {
    op(.param, [], type, named: hint, ["name": .symbol(weight)])
  }

  /// `return %v : type`.
  public mutating func ret(_ value: Value) {
    create(OpKind.return.rawValue, [value], result: nil)
  }
}
