import ArgumentParser
import QoptIR
import QoptPasses

/// `qopt unit WORK K`: runs unit K of a plan (the pipeline with `-blocks` set to the unit's
/// blocks) and keeps its blocks in `WORK/unit-K.ir`. A unit already done with the same
/// fingerprint is skipped; one with another fingerprint (stale) is redone.
struct UnitCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "unit", abstract: "Run one unit of a plan made by qopt plan.",
    helpNames: [.customLong("help", withSingleDash: true), .short, .long])

  @Argument(help: "The work folder (OUT.qopt-work).")
  var work: String

  @Argument(help: "The unit index (0-based).")
  var index: Int

  @Flag(name: .customLong("quiet", withSingleDash: true), help: "No progress lines.")
  var quiet = false

  func run() throws {
    if quiet { Progress.shared.style = .quiet }
    let plan = try WorkPlan.read(work: work)
    guard plan.units.indices.contains(index) else {
      throw WorkError(
        "\(work): unit \(index) does not exist (the plan has units 0..\(plan.units.count - 1))")
    }
    let blocks = plan.units[index]
    let fingerprint = plan.fingerprint(unit: index)
    let path = WorkPlan.unitPath(work, index)
    let what = "unit \(index) (blocks \(blocks.lowerBound)..\(blocks.upperBound))"
    if UnitFile.fingerprint(at: path) == fingerprint {
      stderrWrite("qopt: \(what) is done already (fingerprint \(fingerprint)); skipped\n")
      return
    }
    guard try ModelIdentity.of(path: plan.model) == plan.modelIdentity else {
      throw WorkError("\(plan.model) changed since the plan was made; rerun qopt plan")
    }
    ThreadsOption.apply(plan.threadsFixed ? plan.threads : nil)
    let pipeline = try PipelineParser.parse(plan.passes, registry: PassRegistry.builtin())
    var manager = PassManager(threads: plan.threads) {
      stderrWrite($0.hasSuffix("\n") ? $0 : $0 + "\n")
    }
    manager.blocks = BlockSelection(blocks)
    // The cache phase's inputs of this unit's first block, when stored (without them the
    // passes forward the blocks before it, as a plan without a cache phase does).
    if !plan.cacheBlocks.isEmpty {
      manager.blockInputCache = plan.blockInputCache(work: work, writing: false)
    }
    let module = try loadInput(path: plan.model)
    try module.verify()
    try manager.blocks?.check(against: module)
    try manager.run(pipeline, on: module)
    try module.verify()
    try UnitFile.save(module, blocks: blocks, fingerprint: fingerprint, to: path)
    stderrWrite("qopt: \(what) written to \(path)\n")
  }
}
