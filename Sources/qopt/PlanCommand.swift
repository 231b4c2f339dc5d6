import ArgumentParser
import QoptIR
import QoptPasses

#if canImport(Glibc)
  import Glibc
#endif

/// `qopt plan`: cuts a pipeline on a model into units of decoder blocks, says why, and writes
/// the plan into the work folder `OUT.qopt-work/` (docs/scale-out.md).
struct PlanCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "plan",
    abstract: "Cut a pipeline into units of decoder blocks that run as separate processes.",
    discussion:
      "Writes OUT.qopt-work/plan.json; then run 'qopt unit OUT.qopt-work K' for every unit (in any order, in parallel) and 'qopt merge OUT.qopt-work'.",
    helpNames: [.customLong("help", withSingleDash: true), .short, .long])

  @OptionGroup var plan: PlanOptions

  func validate() throws { try plan.validate() }

  func run() throws {
    let (p, work) = try plan.make(commandWord: "plan", extra: [])
    print(p.summary(work: work), terminator: "")
  }
}

/// The options `qopt plan` and `qopt slurm` share: the single-process command's input,
/// pipeline, output and emit options, plus the number of tasks.
struct PlanOptions: ParsableArguments {
  @Argument(help: "Input model: an .ir file, a .gguf file, or a Hugging Face checkpoint directory.")
  var input: String

  @Option(name: .customLong("passes", withSingleDash: true), help: "Pipeline, e.g. 'rtn<bits=4>'.")
  var passes: String = ""

  @Option(name: .customShort("o"), help: "The final output (written by qopt merge).")
  var output: String

  @Option(
    name: .customLong("tasks", withSingleDash: true),
    help: "Number of units (at most one per decoder block).")
  var tasks: Int

  @Option(name: .customLong("threads", withSingleDash: true), help: ThreadsOption.help)
  var threadsOption: Int?

  @OptionGroup var emit: EmitOptions

  func validate() throws {
    if tasks < 1 { throw ValidationError("-tasks must be at least 1, found \(tasks)") }
    if let t = threadsOption, t < 1 || t > 1024 {
      throw ValidationError("-threads must be in 1...1024, found \(t)")
    }
    try emit.validate(output: output)
  }

  /// Plans, writes `OUT.qopt-work/plan.json` and returns the plan with its work folder.
  /// `commandWord` and the options named in `extra` (e.g. `-wait`) are left out of the
  /// single-process command the plan records.
  func make(commandWord: String, extra: Set<String>) throws -> (WorkPlan, String) {
    let registry = PassRegistry.builtin()
    let pipeline: [PassInvocation]
    do { pipeline = try PipelineParser.parse(passes, registry: registry) } catch {
      throw PipelineDiagnostic(error: error, text: passes)
    }
    var reasons: [String] = []
    var rules: [UnitRule] = []
    for inv in pipeline {
      let rule = UnitRule.of(inv)
      if case .refused(let why) = rule { throw WorkError("plan: " + why) }
      rules.append(rule)
    }
    if rules.contains(.tensorLocal) {
      reasons.append(
        "tensor-local passes (rtn, fuse-scales, quantize-activations) act on each block's weights alone: units split by block"
      )
    }
    if rules.contains(.calibration) {
      reasons.append(
        "calibrate's statistics of block i come from the float forward through blocks 0..i: each unit runs it over its own blocks, from its first block's inputs (sums over the same windows in the same order, so equal to one run's)"
      )
    }
    if rules.contains(.blockwise) {
      reasons.append(
        "block-wise tuning on float inputs (autoround quanted-input=false, gptq float-inputs) needs only the float model's inputs of its first block, not the quantized blocks before it (quanted-input=true, or gptq without float-inputs, is refused: it is sequential)"
      )
    }
    if rules.isEmpty { reasons.append("no pass: each unit copies its blocks") }
    let shards = CalibrationShards.phase(of: pipeline)
    if let shards {
      reasons.append(
        "calibrate<data-shards=\(shards.count);partials=\(shards.partials)>: a data-shards phase (\(shards.count) tasks) first writes each shard's partial statistics, and gptq<float-inputs>'s Hessian sums, to \(shards.partials); the later phases read them"
      )
    }

    let threads = threadsOption ?? defaultThreads()
    ThreadsOption.apply(threadsOption)
    let emitter = try emit.emitter(threads: threads, output: output)
    try emit.preflight(output: output)
    let module = try loadInput(path: input)
    try module.verify()
    let blocks = try BlockSelection.blockCount(of: module)
    // A weight the pipeline would quantize outside every block belongs to no unit.
    let owners = try BlockSelection.owners(in: module)
    let predicted = try Preflight.check(pipeline, module, emitter: emitter)
    if let w = predicted.weights.first(where: { $0.producer != nil && owners[$0.name] == nil }) {
      throw WorkError(
        "plan: \(w.producer ?? "") would quantize \(w.name), which no decoder block reads; units cover blocks only (leave it out with ignore=, or run as one process)"
      )
    }
    let units = WorkPlan.split(blocks: blocks, tasks: tasks)
    let cacheBlocks = WorkPlan.cacheBlocks(
      units: units, forwards: rules.contains(.calibration) || rules.contains(.blockwise))
    if !cacheBlocks.isEmpty {
      reasons.append(
        "the float forward before a unit's first block is the same for every unit: a cache phase runs it once (calibrate's forward, and the tuning pass's own batching where it differs) and stores the inputs of blocks \(cacheBlocks.map(String.init).joined(separator: ", ")) for the units"
      )
    }
    let work = WorkPlan.folder(for: absolutePath(output))
    if !isDirectory(work) && mkdir(work, 0o755) != 0 {
      throw WorkError("\(work): cannot create the work folder (errno \(errno))")
    }
    let p = WorkPlan(
      model: absolutePath(input), passes: passes, output: absolutePath(output),
      emitArguments: emitArguments(), command: singleRunArguments(commandWord, extra),
      threads: threads, threadsFixed: threadsOption != nil, blockCount: blocks,
      units: units, cacheBlocks: cacheBlocks, reasons: reasons,
      modelIdentity: try ModelIdentity.of(path: input), dataShards: shards?.count ?? 0)
    try p.write(work: work)
    return (p, work)
  }

  /// The emit options as typed on the command line.
  private func emitArguments() -> [String] {
    let names = [
      "-emit", "-max-shard-size", "-dense-dtype", "-force", "-gguf-type-override", "-gguf-pure",
      "-gguf-leave-output-tensor",
    ]
    var out: [String] = []
    let args = Array(CommandLine.arguments.dropFirst())
    var i = 0
    while i < args.count {
      let a = args[i]
      let name = a.split(separator: "=", maxSplits: 1).first.map(String.init) ?? a
      if names.contains(name) {
        out.append(a)
        // `-emit gguf` (a separate value) for the options that take one.
        if !a.contains("=") && !["-force", "-gguf-pure", "-gguf-leave-output-tensor"].contains(a),
          i + 1 < args.count
        {
          out.append(args[i + 1])
          i += 1
        }
      }
      i += 1
    }
    return out
  }

  /// This command line as the single-process `qopt` command it stands for: without the
  /// subcommand word, `-tasks` and the options in `extra`.
  private func singleRunArguments(_ word: String, _ extra: Set<String>) -> [String] {
    var args = Array(CommandLine.arguments.dropFirst())
    if let i = args.firstIndex(of: word) { args.remove(at: i) }
    var out: [String] = []
    var i = 0
    let valued = Set(["-tasks"] + extra.filter { $0.hasSuffix("=") }.map { String($0.dropLast()) })
    while i < args.count {
      let a = args[i]
      let name = a.split(separator: "=", maxSplits: 1).first.map(String.init) ?? a
      if valued.contains(name) || extra.contains(name) {
        if !a.contains("=") && valued.contains(name) { i += 1 }
        i += 1
        continue
      }
      out.append(a)
      i += 1
    }
    return out
  }
}

extension WorkPlan {
  /// What `qopt plan` prints: the units, why, and the commands that run them.
  func summary(work: String) -> String {
    var s =
      "plan: \(blockCount) decoder blocks in \(units.count) unit\(units.count == 1 ? "" : "s") (work folder \(work))\n"
    for (k, r) in units.enumerated() {
      s += "  unit \(k): blocks \(r.lowerBound)..\(r.upperBound)\n"
    }
    for r in reasons { s += "why: \(r)\n" }
    if dataShards > 1 {
      s +=
        "first: qopt shard \(work) K for K in 0..\(dataShards - 1) (the data-shards phase, \(dataShards) tasks, any order, in parallel)\n"
    }
    if !cacheBlocks.isEmpty {
      s +=
        "phases: cache (1 task: qopt cache \(work), stores the float inputs of blocks \(cacheBlocks.map(String.init).joined(separator: ", ")) in \(WorkPlan.cacheFolder(work))), units (\(units.count) tasks), merge\n"
      s +=
        "run: qopt cache \(work), then qopt unit \(work) K for K in 0..\(units.count - 1) (any order, in parallel), then qopt merge \(work)\n"
    } else {
      s += "phases: units (\(units.count) task\(units.count == 1 ? "" : "s")), merge\n"
      s +=
        "run: qopt unit \(work) K for K in 0..\(units.count - 1) (any order, in parallel), then qopt merge \(work)\n"
    }
    return s
  }
}
