import QoptIR

/// Options of `awq`: the weight options of the quantizing pass that follows (`rtn`'s, one
/// declaration) — the scheme AWQ scales and clips for — plus the search's.
struct AWQOptions: PassOptions {
  var weights = RTNOptions()
  var grid = 20
  var duoScaling = true
  var clip = true
  var searchSamples = 4
  var batchSize = 8

  init() {}
  static let schema: [OptionField<AWQOptions>] =
    RTNOptions.weightSchema.map { $0.nested(in: \AWQOptions.weights) } + [
      .int(
        "grid", \.grid,
        "ratios tried per scale search (α = k/grid, k = 0…grid−1) and clipping steps", in: 1...1000),
      .bool(
        "duo-scaling", \.duoScaling,
        "s = x̄^α / w̄^(1−α) (llm-compressor's default); no-duo-scaling: s = x̄^α"),
      .bool(
        "clip", \.clip,
        "search a clipping range per group after scaling (AutoAWQ auto_clip; not for q/k)"),
      .int(
        "search-samples", \.searchSamples,
        "calibration windows whose activations drive the searches (the first ones)",
        in: 1...1_000_000),
      .int("batch-size", \.batchSize, "calibration samples per block forward", in: 1...65536),
    ]
}
