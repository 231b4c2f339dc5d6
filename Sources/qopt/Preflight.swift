import QoptBackends
import QoptIR
import QoptPasses

/// The check between reading the input and running the first pass: the passes' declared
/// effects (`PipelinePlan`) against the output format's rules (`WeightEmitter.refusal`).
enum Preflight {
  /// Returns the predicted weight types (what `qopt plan` checks against the blocks).
  @discardableResult
  static func check(
    _ pipeline: [PassInvocation], _ module: Module, emitter: (any WeightEmitter)?
  ) throws -> WeightPlan {
    guard let emitter else { return try PipelinePlan.check(pipeline, on: module) }
    return try PipelinePlan.check(pipeline, on: module, format: emitter.formatName) {
      name, shape, scheme in
      emitter.refusal(name: name, shape: shape, scheme: scheme)
    }
  }
}
