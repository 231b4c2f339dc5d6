/// The top-level IR unit: functions, module attributes (model configuration) and the weight
/// store that `param` ops refer to.
public final class Module {
  public var name: String?
  public var attributes: AttributeDict
  public private(set) var functions: [Function] = []
  public var weights: WeightStore
  /// Importance statistics (llama.cpp's imatrix) keyed by weight name: what `calibrate`
  /// accumulates and `-imatrix=FILE` loads, for importance-weighted encoders. Printed as
  /// `importance` declarations with their sums in the sidecar (docs/ir.md).
  public var importance: [String: ImportanceStats] = [:]
  /// The file the module was parsed from, for diagnostics.
  public var sourceFile: String?

  public init(
    name: String? = nil, attributes: AttributeDict = AttributeDict(),
    weights: WeightStore = WeightStore()
  ) {
    self.name = name
    self.attributes = attributes
    self.weights = weights
  }

  public func append(_ function: Function) {
    function.module = self
    functions.append(function)
  }

  public func remove(_ function: Function) {
    functions.removeAll { $0 === function }
    function.module = nil
  }

  public func function(named name: String) -> Function? {
    functions.first { $0.name == name }
  }

  /// Every op of every function, in order.
  public var allOps: [Op] { functions.flatMap(\.body) }
}
