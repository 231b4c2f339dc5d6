/// An SSA value: a function argument or the result of an op. Every value is a tensor.
///
/// IR nodes are reference types confined to one task at a time (not `Sendable`).
public final class Value {
  /// The name printed after `%`; unique within its function (the printer keeps it).
  public var name: String
  public var type: TensorType
  /// The op that defines this value; `nil` for function arguments.
  public internal(set) weak var definingOp: Op?

  public init(name: String, type: TensorType) {
    self.name = name
    self.type = type
  }
}
