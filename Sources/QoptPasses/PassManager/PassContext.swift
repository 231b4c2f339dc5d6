import QoptIR

/// Everything a pass may touch besides its options: the module's analyses, the builder
/// entry points, weight updates, diagnostics and run-wide settings. All mutations go through
/// here so the manager knows whether the module changed.
public final class PassContext {
  public let module: Module
  public let analyses: AnalysisManager
  /// Worker threads a pass may use (the `-threads` option).
  public let threads: Int
  /// Where remarks and warnings go (stderr in the CLI).
  let emit: (Diagnostic) -> Void
  let debugLog: (String) -> Void
  public private(set) var changed = false
  /// Where a block-wise pass keeps its checkpoint when its options name none (nil: nowhere),
  /// and whom it tells about each saved block (`BlockCheckpoints`).
  public internal(set) var defaultCheckpointDirectory: String?
  public internal(set) var checkpointSaved: @Sendable (BlockCheckpointProgress) -> Void = {
    _ in
  }

  init(module: Module, analyses: AnalysisManager, threads: Int, emit: @escaping (Diagnostic) -> Void, debug: @escaping (String) -> Void = { _ in }) {
    self.module = module
    self.analyses = analyses
    self.threads = threads
    self.emit = emit
    self.debugLog = debug
  }

  /// A line for `-debug-pass-manager` (silent otherwise): what the pass decided and why.
  public func debug(_ message: String) { debugLog(message) }

  /// Records that the pass changed the module (analyses not preserved will be invalidated).
  public func markChanged() { changed = true }

  /// A builder inserting right after `op`.
  public func builder(after op: Op) -> Builder {
    markChanged()
    return Builder(after: op)
  }

  /// A builder inserting right before `op`.
  public func builder(before op: Op) -> Builder {
    markChanged()
    return Builder(before: op)
  }

  public func replaceAllUses(of old: Value, with new: Value, in function: Function) {
    markChanged()
    function.replaceAllUses(of: old, with: new)
  }

  public func erase(_ op: Op) {
    markChanged()
    op.parent?.erase(op)
  }

  /// Replaces the weight `name` in the store.
  public func setWeight(_ name: String, _ entry: WeightStore.Entry) {
    markChanged()
    module.weights.set(name, entry)
  }

  /// Sets an attribute on an op.
  public func setAttribute(_ key: String, _ value: Attribute?, on op: Op) {
    markChanged()
    op.attributes[key] = value
  }

  /// Changes a value's type (for example a `param` whose weight became quantized).
  public func retype(_ value: Value, to type: TensorType) {
    markChanged()
    value.type = type
  }

  /// The cached result of an analysis.
  public func analysis<A: Analysis>(_ a: A.Type) throws -> A.Result {
    try analyses.get(a, for: module)
  }

  /// Reports a remark (informational) or warning; errors are thrown as `PassError`.
  public func diagnose(_ d: Diagnostic) { emit(d) }

  public func remark(_ message: String, at op: Op? = nil) {
    emit(Diagnostic(.remark, message, at: op?.location))
  }
}

/// A pass failed; rendered like every other located error.
public struct PassError: DiagnosticError, Sendable {
  public var pass: String
  public var message: String
  public var location: SourceLocation?

  public init(pass: String, _ message: String, at location: SourceLocation? = nil) {
    self.pass = pass
    self.message = message
    self.location = location
  }

  public var diagnostics: [Diagnostic] { [Diagnostic(.error, "\(pass): \(message)", at: location)] }
}
