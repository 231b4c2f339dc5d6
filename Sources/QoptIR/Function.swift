/// A function: typed arguments, one result type and a single straight-line body ending in
/// `return`. The frontend emits one per decoder block plus `@main`.
public final class Function {
  public var name: String
  public private(set) var arguments: [Value]
  public var resultType: TensorType
  public private(set) var body: [Op] = []
  public var location: SourceLocation?
  public internal(set) weak var module: Module?

  public init(name: String, arguments: [Value], resultType: TensorType) {
    self.name = name
    self.arguments = arguments
    self.resultType = resultType
  }

  /// Appends `op` at the end of the body.
  public func append(_ op: Op) {
    op.parent = self
    body.append(op)
  }

  /// Inserts `op` at `index` in the body.
  public func insert(_ op: Op, at index: Int) {
    op.parent = self
    body.insert(op, at: index)
  }

  /// Removes `op` from the body; its result must have no remaining uses.
  public func erase(_ op: Op) {
    body.removeAll { $0 === op }
    op.parent = nil
  }

  /// Index of `op` in the body.
  public func index(of op: Op) -> Int? { body.firstIndex { $0 === op } }

  /// Rewrites every operand that is `old` to `new`, in this function.
  public func replaceAllUses(of old: Value, with new: Value) {
    for op in body {
      for i in op.operands.indices where op.operands[i] === old { op.operands[i] = new }
    }
  }

  /// The ops that use `value` as an operand, in body order.
  public func users(of value: Value) -> [Op] {
    body.filter { op in op.operands.contains { $0 === value } }
  }

  /// The ops of a given kind, in body order.
  public func ops(_ kind: OpKind) -> [Op] { body.filter { $0.kind == kind } }

  /// The terminator, if the body ends in one.
  public var returnOp: Op? { body.last.flatMap { $0.kind == .return ? $0 : nil } }
}
