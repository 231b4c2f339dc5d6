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
  var trueSequential = false
  var searchScale = true
  var relativeDamping = false
  var floatInputs = false

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
        in: 0...1_000_000),
      .bool(
        "damp-relative", \.relativeDamping,
        "damp each input channel by damp times its own H_jj (shrink the input correlations) instead of damp times the mean diagonal"
      ),
      .bool(
        "true-sequential", \.trueSequential,
        "solve the linears of a block in dataflow stages (q/k/v, o, gate/up, down), each stage's H from the inputs the rounded earlier stages produce"
      ),
      .bool(
        "search-scale", \.searchScale,
        "each group's scale by auto-round's importance-weighted search (rtn<weighted>) with H's diagonal as importance, when the group is reached (int sym full-range; nvfp4: the best E4M3 group scale within ±3 codes of the max rule's; other grids use their rule)"
      ),
      .bool(
        "float-inputs", \.floatInputs,
        "each block's H from the float model's inputs to it (otherwise the previous quantized blocks' outputs, as llm-compressor)"
      ),
      .int("batch-size", \.batchSize, "calibration samples per block forward", in: 1...65536),
    ]

  /// What the solver is told.
  var solver: GPTQSolver {
    GPTQSolver(
      dampening: dampening, blockSize: blockSize, actOrder: actOrder, staticGroups: staticGroups,
      relativeDamping: relativeDamping)
  }
}
