import ArgumentParser
import QoptIR
import QoptPasses

/// `qopt cache WORK`: the cache phase of a plan. Runs the pipeline's `calibrate` and its
/// block-wise tuning passes (forward only: they tune nothing here) on the input model and
/// stores in `WORK/cache/` the float inputs of every unit's first block, as each pass's own
/// forward computes them, so that `qopt unit` starts there instead of forwarding the blocks
/// before it (docs/scale-out.md). Files already stored for this plan are skipped; stale ones
/// are recomputed.
struct CacheCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cache",
    abstract: "Run a plan's cache phase: store the float inputs of every unit's first block.",
    helpNames: [.customLong("help", withSingleDash: true), .short, .long])

  @Argument(help: "The work folder (OUT.qopt-work).")
  var work: String

  @Flag(name: .customLong("quiet", withSingleDash: true), help: "No progress lines.")
  var quiet = false

  func run() throws {
    if quiet { Progress.shared.style = .quiet }
    let plan = try WorkPlan.read(work: work)
    guard !plan.cacheBlocks.isEmpty else {
      stderrWrite("qopt: the plan in \(work) has no cache phase; nothing to do\n")
      return
    }
    guard try ModelIdentity.of(path: plan.model) == plan.modelIdentity else {
      throw WorkError("\(plan.model) changed since the plan was made; rerun qopt plan")
    }
    ThreadsOption.apply(plan.threadsFixed ? plan.threads : nil)
    // Only the passes that forward float blocks: under a unit's -blocks every other pass
    // leaves the blocks before the unit's first exactly as the input has them.
    let pipeline = try PipelineParser.parse(plan.passes, registry: PassRegistry.builtin())
      .filter { [UnitRule.calibration, UnitRule.blockwise].contains(UnitRule.of($0)) }
    var manager = PassManager(threads: plan.threads) {
      stderrWrite($0.hasSuffix("\n") ? $0 : $0 + "\n")
    }
    let cache = plan.blockInputCache(work: work, writing: true)
    manager.blockInputCache = cache
    let module = try loadInput(path: plan.model)
    try module.verify()
    try manager.run(pipeline, on: module)
    let list = plan.cacheBlocks.map(String.init).joined(separator: ", ")
    stderrWrite("qopt: cache phase done: the inputs of blocks \(list) are in \(cache.directory)\n")
  }
}
