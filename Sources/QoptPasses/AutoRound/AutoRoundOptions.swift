import QoptIR

/// Options of `autoround` (defaults: the reference's W4A16 recipe at auto-round-light's 50
/// iterations, with `group-size=auto`; docs/autoround.md says why).
package struct AutoRoundOptions: PassOptions {
  package var iters = 50
  var quantScheme = "int"
  var lr: Double?
  var minmaxLR: Double?
  var bits = 4
  /// nil: `auto` (`GroupSizeChoice`).
  var groupSize: Int? = nil
  var sym = true
  var minmaxTuning = true
  var batchSize = 4
  var seed = 42
  var quantedInput = true
  var useBest = true
  var scaleDType = "f16"
  var checkpointDir = ""
  var optRTN = true
  var targets = ["Linear"]
  var ignore: [String] = []

  package init() {}
  package static let schema: [OptionField<AutoRoundOptions>] = [
    .choice(
      "scheme", \.quantScheme, ["int", "nvfp4"],
      "int: integer codes (bits, sym, group-size, scale-dtype apply); nvfp4: FP4 E2M1 codes in groups of 16 with E4M3 scales and a global scale fixed before tuning, shared by the linears that read the same input"
    ),
    .int(
      "iters", \.iters, "SignSGD steps per block; 0 is plain RTN (no data needed)",
      in: 0...1_000_000),
    .optionalDouble(
      "lr", \.lr, "step size of V; auto: 1/iters (2/iters when iters ≥ 1000 and bits ≤ 3)",
      in: 0...10),
    .optionalDouble(
      "minmax-lr", \.minmaxLR, "step size of the clipping factors; auto: lr", in: 0...10),
    .int("bits", \.bits, "bits per weight", in: 2...8),
    .bool(
      "sym", \.sym,
      "symmetric full-range signed scale (auto-round quant_tensor_sym); no-sym: asymmetric with zero point"
    ),
    .groupSize(
      "group-size", \.groupSize,
      "weights sharing one scale along a row; -1 per channel; auto: 128 where it divides the row, else 64 or 32, else per channel",
      in: -1...65536),
    .bool("minmax-tuning", \.minmaxTuning, "tune the per-group clipping factors α, β"),
    .int("batch-size", \.batchSize, "calibration samples per step", in: 1...65536),
    .int("seed", \.seed, "seed of the mini-batch sampler", in: 0...Int.max),
    .bool(
      "quanted-input", \.quantedInput,
      "tune each block on the previous quantized block's outputs (auto-round enable_quanted_input)"),
    .bool(
      "use-best", \.useBest, "keep the parameters of the lowest-loss iteration (otherwise the last)"
    ),
    .choice(
      "scale-dtype", \.scaleDType, ["f16", "f32", "bf16"],
      "scale precision (auto-round default f16)"),
    .string(
      "checkpoint-dir", \.checkpointDir,
      "directory for per-block checkpoints, kept after success (default: OUT.qopt-resume/autoround beside -o OUT, removed after success); a rerun of the same command resumes there"
    ),
    .bool(
      "opt-rtn", \.optRTN,
      "iters=0 with calibrate earlier: importance-weighted scale search (auto-round's optimized RTN; int sym below 8 bits); no-opt-rtn or no calibration: plain RTN"
    ),
    .list("targets", \.targets, "Linear, names or re: regexes of the weights to quantize"),
    .list("ignore", \.ignore, "names or re: regexes of weights to leave alone"),
  ]

  /// The integer scheme of a weight whose rows have `columns` weights.
  package func scheme(columns: Int) -> IntScheme {
    IntScheme(
      bits: bits, symmetric: sym,
      granularity: GroupSizeChoice.granularity(explicit: groupSize, columns: columns),
      scaleType: DType(rawValue: scaleDType) ?? .f16)
  }

  /// The V step size (autoround.md §5 `_lr_for_bits`).
  var effectiveLR: Float {
    if let lr { return Float(lr) }
    guard iters > 0 else { return 0 }
    return (iters >= 1000 && bits <= 3 ? 2 : 1) / Float(iters)
  }

  /// Every option that changes the result, and the thread count (it changes the float
  /// summation order), for checkpoint fingerprints.
  func fingerprint(threads: Int) -> String {
    "threads=\(threads);scheme=\(quantScheme);iters=\(iters);lr=\(effectiveLR);minmax-lr=\(minmaxLR.map { "\($0)" } ?? "lr");bits=\(bits);group-size=\(groupSize.map(String.init) ?? "auto");sym=\(sym);"
      + "minmax-tuning=\(minmaxTuning);batch-size=\(batchSize);seed=\(seed);quanted-input=\(quantedInput);use-best=\(useBest);"
      + "scale-dtype=\(scaleDType);targets=\(targets.joined(separator: ","));ignore=\(ignore.joined(separator: ","))"
  }
}
