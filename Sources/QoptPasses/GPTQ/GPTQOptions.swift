import QoptIR

/// Options of `gptq`: `rtn`'s weight options (one declaration, `OptionField.nested`) plus the
/// solver's.
struct GPTQOptions: PassOptions {
  var weights = RTNOptions()
  var dampening = 0.01
  var blockSize = 128
  var actOrder = false
  var staticGroups = false
  var batchSize = 8
  /// How many tokens the first token of each calibration window counts for in the Hessian.
  var sinkWeight = 1.0

  init() {}
  static let schema: [OptionField<GPTQOptions>] =
    RTNOptions.weightSchema.map { $0.nested(in: \GPTQOptions.weights) } + [
      .double(
        "damp", \.dampening,
        "added to the Hessian's diagonal as a fraction of its mean (llm-compressor dampening_frac)",
        in: 0...100),
      .int("block-size", \.blockSize, "columns per lazy batch update", in: 1...1_048_576),
      .bool(
        "act-order", \.actOrder,
        "round columns by descending Hessian diagonal (implies static-groups; llm-compressor actorder=weight)"
      ),
      .bool(
        "static-groups", \.staticGroups,
        "fit every group's scales from the original weights first (otherwise when the group's first column is reached)"
      ),
      .double(
        "sink-weight", \.sinkWeight,
        "the first token of each calibration window (the attention sink) counts this many times in H",
        in: 1...1_000_000),
      .int("batch-size", \.batchSize, "calibration samples per block forward", in: 1...65536),
    ]

  /// What the solver is told.
  var solver: GPTQSolver {
    GPTQSolver(
      dampening: dampening, blockSize: blockSize, actOrder: actOrder, staticGroups: staticGroups)
  }
}
