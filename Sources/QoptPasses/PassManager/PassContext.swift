import QoptIR
import QoptRuntime

/// Everything a pass may touch besides its options: the module's analyses, the builder
/// entry points, weight updates, diagnostics and run-wide settings. All mutations go through
/// here so the manager knows whether the module changed, and every diagnostic is made here so
/// it names the pass that reports it (`error(_:)`, `remark(_:)`): a pass never writes its own
/// name.
public final class PassContext {
  /// The name of the running pass, as the pipeline spells it.
  public let pass: String
  public let module: Module
  public let analyses: AnalysisManager
  /// Worker threads a pass may use (the `-threads` option).
  public let threads: Int
  /// The decoder blocks whose weights the run may change (`-blocks=A..B`); nil: all of them.
  public internal(set) var blocks: BlockSelection?
  /// Stored float block inputs of a plan's cache phase (`BlockInputCache`): written by the
  /// cache phase, read by a unit in place of forwarding the blocks before its own; nil: none.
  public internal(set) var blockInputCache: BlockInputCache?
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

  init(
    pass: String, module: Module, analyses: AnalysisManager, threads: Int,
    emit: @escaping (Diagnostic) -> Void,
    debug: @escaping (String) -> Void = { _ in }
  ) {
    self.pass = pass
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

  /// Removes the weight `name` from the store (nothing may read it any more).
  public func removeWeight(_ name: String) {
    markChanged()
    module.weights.remove(name)
  }

  /// Sets (or, with nil, removes) the importance statistics of weight `name`.
  public func setImportance(_ name: String, _ stats: ImportanceStats?) {
    markChanged()
    module.importance[name] = stats
  }

  /// Sets (or, with nil, removes) a module attribute.
  public func setModuleAttribute(_ key: String, _ value: Attribute?) {
    markChanged()
    module.attributes[key] = value
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

  /// Reports a remark (informational) or warning as given; errors are thrown (`error(_:)`).
  public func diagnose(_ d: Diagnostic) { emit(d) }

  /// Reports an informational remark, `<pass>: message` (a message that already starts with
  /// the pass name is left as it is).
  public func remark(_ message: String, at op: Op? = nil) {
    emit(Diagnostic(.remark, named(message), at: op?.location))
  }

  /// Reports a warning, `<pass>: message`: something the pass left as it is.
  public func warning(_ message: String, at location: SourceLocation? = nil) {
    emit(Diagnostic(.warning, named(message), at: location))
  }

  /// The error to throw when the pass fails, named after the pass: `throw context.error("…")`.
  public func error(_ message: String, at location: SourceLocation? = nil) -> PassError {
    PassError(pass: pass, message, at: location)
  }

  /// The error to throw when the pass fails at `op` (located at it).
  public func error(_ message: String, at op: Op) -> PassError {
    PassError(pass: pass, message, at: op.location)
  }

  private func named(_ message: String) -> String {
    message.hasPrefix("\(pass): ") ? message : "\(pass): \(message)"
  }
}

/// A pass failed; rendered like every other located error, `<pass>: message`.
///
/// Passes make theirs with `context.error(_:)`. Code shared by several passes, which does not
/// know which one it runs in, throws one without a pass (`PassError(_:at:)`); the pass manager
/// names it after the running pass (`PassError.naming`).
public struct PassError: DiagnosticError, Sendable {
  /// The pass that failed; empty until the pass manager names it.
  public var pass: String
  public var message: String
  public var location: SourceLocation?

  public init(pass: String, _ message: String, at location: SourceLocation? = nil) {
    self.pass = pass
    self.message = message
    self.location = location
  }

  /// An error from shared code that the pass manager names after the running pass.
  public init(_ message: String, at location: SourceLocation? = nil) {
    self.init(pass: "", message, at: location)
  }

  public var diagnostics: [Diagnostic] {
    [Diagnostic(.error, pass.isEmpty ? message : "\(pass): \(message)", at: location)]
  }

  /// Runs `body` on behalf of pass `pass` and rethrows the errors that name no pass as its
  /// own: a `PassError` from shared code, and a `RuntimeError` from the runtime's executors
  /// (`BlockExecutor` in `calibrate` and `autoround`).
  static func naming<T>(_ pass: String, _ body: () throws -> T) throws -> T {
    do {
      return try body()
    } catch var e as PassError where e.pass.isEmpty {
      e.pass = pass
      throw e
    } catch let e as RuntimeError {
      throw PassError(pass: pass, e.message, at: e.location)
    }
  }
}
