import ArgumentParser
import QoptIR
import QoptPasses

/// `qopt merge WORK`: puts every unit's blocks into the input model and writes the final
/// output exactly as the single-process command would (same emitter, same manifest command),
/// atomically. Refuses, naming them, when units are missing or stale.
struct MergeCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "merge", abstract: "Assemble the output of a plan's finished units.",
    helpNames: [.customLong("help", withSingleDash: true), .short, .long])

  @Argument(help: "The work folder (OUT.qopt-work).")
  var work: String

  @Flag(
    name: .customLong("quiet", withSingleDash: true),
    help: "No progress lines and no closing summary.")
  var quiet = false

  func run() throws {
    let started = now()
    if quiet { Progress.shared.style = .quiet }
    let plan = try WorkPlan.read(work: work)
    var problems: [String] = []
    for k in plan.units.indices {
      let r = plan.units[k]
      let what = "unit \(k) (blocks \(r.lowerBound)..\(r.upperBound))"
      switch UnitFile.fingerprint(at: WorkPlan.unitPath(work, k)) {
      case nil: problems.append("\(what) is missing")
      case plan.fingerprint(unit: k)?: continue
      default: problems.append("\(what) is stale (made for another plan, model or qopt)")
      }
    }
    if !problems.isEmpty {
      throw WorkError(
        "merge: " + problems.joined(separator: "; ")
          + "; run qopt unit \(work) K for each, then merge again")
    }
    guard try ModelIdentity.of(path: plan.model) == plan.modelIdentity else {
      throw WorkError("\(plan.model) changed since the plan was made; rerun qopt plan")
    }
    let emit = try EmitOptions.parse(plan.emitArguments)
    ThreadsOption.apply(plan.threadsFixed ? plan.threads : nil)
    let emitter = try emit.emitter(
      threads: plan.threads, output: plan.output, command: plan.command)
    try emit.preflight(output: plan.output)
    let module = try loadInput(path: plan.model)
    var attributes: AttributeDict?
    for k in plan.units.indices {
      let a = try UnitFile.graft(WorkPlan.unitPath(work, k), into: module)
      if let attributes, attributes != a {
        throw WorkError(
          "merge: unit \(k)'s module attributes differ from unit 0's; rerun the units")
      }
      attributes = a
    }
    if let attributes { module.attributes = attributes }
    try module.verify()
    if let emitter {
      try IOProgress.emitting(plan.output, format: emitter.formatName) {
        try emitter.emit(module, to: plan.output)
      }
    } else {
      try IOProgress.emitting(plan.output, format: "ir") {
        try ModuleIO.save(module, to: plan.output)
      }
    }
    if !quiet {
      stderrWrite(
        RunSummary.text(
          module, output: plan.output, format: emitter?.formatName ?? "ir", seconds: now() - started
        ))
    }
  }
}
