import QoptIR

/// Runs a pipeline over a module with the requested instrumentation; diagnostics, IR dumps and
/// reports go to `log` (stderr in the CLI).
public struct PassManager {
  public var instrumentation: Instrumentation
  public var threads: Int
  /// Default checkpoints of block-wise passes (none unless the caller sets a root).
  public var checkpoints = BlockCheckpoints()
  /// `-blocks=A..B`: only these decoder blocks' weights change (`BlockSelection`).
  public var blocks: BlockSelection?
  /// The cache phase's stored block inputs, written or read (`BlockInputCache`).
  public var blockInputCache: BlockInputCache?
  let log: (String) -> Void

  public init(
    instrumentation: Instrumentation = Instrumentation(), threads: Int = 2,
    log: @escaping (String) -> Void
  ) {
    self.instrumentation = instrumentation
    self.threads = threads
    self.log = log
  }

  public func run(_ pipeline: [PassInvocation], on module: Module) throws {
    let ins = instrumentation
    let debug = ins.debugPassManager
    let analyses = AnalysisManager(log: { if debug { self.log("qopt-pm: \($0)") } })
    let dumpPrinter = Printer(inlineWeightLimit: 0)
    var timings: [(String, Double)] = []
    var occurrences: [String: Int] = [:]
    for inv in pipeline {
      let name = inv.pass.name
      occurrences[name, default: 0] += 1
      if ins.printBeforeAll || ins.printBefore.contains(name) {
        log("// *** IR Dump Before \(name) ***\n" + dumpPrinter.print(module))
      }
      if debug { log("qopt-pm: running pass: \(name)") }
      let context = PassContext(
        pass: name, module: module, analyses: analyses, threads: threads,
        emit: { d in self.log(d.description) },
        debug: { m in if debug { self.log("qopt-pm: \(name): \(m)") } })
      context.defaultCheckpointDirectory = checkpoints.directory(
        pass: name, occurrence: occurrences[name] ?? 1)
      context.checkpointSaved = checkpoints.onSaved
      context.blocks = blocks
      context.blockInputCache = blockInputCache
      let t0 = now()
      try PassError.naming(name) { try inv.pass.body(module, inv.options, context) }
      timings.append((name, now() - t0))
      if context.changed {
        analyses.invalidate(except: inv.pass.preserves)
      } else if debug {
        log("qopt-pm: \(name) changed nothing; all analyses preserved")
      }
      if ins.verifyEach {
        do { try module.verify() } catch {
          throw PassError(
            pass: name, "the module does not verify after this pass:\n\(error.description)")
        }
      }
      if ins.printAfterAll || ins.printAfter.contains(name) {
        log("// *** IR Dump After \(name) ***\n" + dumpPrinter.print(module))
      }
    }
    if ins.timePasses { log(timingReport(timings)) }
  }
}
