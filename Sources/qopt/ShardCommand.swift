import ArgumentParser
import QoptIR
import QoptPasses

/// `qopt shard WORK K`: task K of a plan's data-shards phase. Runs the plan's pipeline with
/// `calibrate<…;shard=K>`, up to its last pass that forwards calibration data, on the input
/// model: calibrate writes shard K's partial statistics and `gptq<float-inputs>` its Hessian
/// sums to the pipeline's `partials` directory, which the cache phase and the units then read
/// (docs/scale-out.md). Writes no model.
struct ShardCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "shard",
    abstract: "Run task K of a plan's data-shards phase: write data shard K's partials.",
    helpNames: [.customLong("help", withSingleDash: true), .short, .long])

  @Argument(help: "The work folder (OUT.qopt-work).")
  var work: String

  @Argument(help: "The data shard, 0..N-1.")
  var shard: Int

  @Flag(name: .customLong("quiet", withSingleDash: true), help: "No progress lines.")
  var quiet = false

  func run() throws {
    if quiet { Progress.shared.style = .quiet }
    let plan = try WorkPlan.read(work: work)
    guard plan.dataShards > 1 else {
      throw WorkError(
        "shard: the plan in \(work) has no data-shards phase (its calibrate has no data-shards=N with partials=DIR)"
      )
    }
    guard (0..<plan.dataShards).contains(shard) else {
      throw WorkError(
        "shard: \(shard) is not one of the plan's \(plan.dataShards) data shards (0..\(plan.dataShards - 1))"
      )
    }
    guard try ModelIdentity.of(path: plan.model) == plan.modelIdentity else {
      throw WorkError("\(plan.model) changed since the plan was made; rerun qopt plan")
    }
    ThreadsOption.apply(plan.threadsFixed ? plan.threads : nil)
    let pipeline = CalibrationShards.shardRun(
      shard, of: try PipelineParser.parse(plan.passes, registry: PassRegistry.builtin()))
    var manager = PassManager(threads: plan.threads) {
      stderrWrite($0.hasSuffix("\n") ? $0 : $0 + "\n")
    }
    let module = try loadInput(path: plan.model)
    try module.verify()
    try manager.run(pipeline, on: module)
    stderrWrite("qopt: data shard \(shard) of \(plan.dataShards) done\n")
  }
}
