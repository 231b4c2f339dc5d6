import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// What `finetune` trains.
package enum FinetuneParams: String, CaseIterable, Sendable {
  case scales
  case scalesAndWeights = "scales+weights"
}

/// The loss `finetune` minimizes.
package enum FinetuneLossKind: String, CaseIterable, Sendable {
  case kd, ce
}

/// How the learning rate moves over the steps after warmup.
package enum LRSchedule: String, CaseIterable, Sendable {
  case cosine, linear, constant
}

/// Options of `finetune` (defaults: docs/finetune.md says why).
package struct FinetuneOptions: PassOptions {
  package var steps = 100
  package var lr = 1e-4
  package var weightLR = 1e-5
  package var batchSize = 4
  package var seqlen = 0
  package var params = FinetuneParams.scales
  package var loss = FinetuneLossKind.kd
  package var seed = 42
  package var schedule = LRSchedule.cosine
  package var warmup = 0
  package var topK = 64
  package var valWindows = 4
  package var evalEvery = 10
  package var checkpointEvery = 25
  package var checkpointDir = ""

  package init() {}
  package static let schema: [OptionField<FinetuneOptions>] = [
    .int("steps", \.steps, "Adam steps", in: 0...1_000_000),
    .double("lr", \.lr, "peak learning rate of the scales and zero points", in: 0...1),
    .double(
      "weight-lr", \.weightLR, "peak learning rate of the float weights (params=scales+weights)",
      in: 0...1),
    .int("batch-size", \.batchSize, "calibration windows per step", in: 1...65536),
    .int(
      "seqlen", \.seqlen,
      "tokens per window used (the first ones); 0: calibrate's seqlen", in: 0...1_000_000),
    .choice(
      "params", \.params,
      "scales: scales and zero points, codes fixed; scales+weights: also the float weights through the straight-through estimator, codes re-rounded"
    ),
    .choice(
      "loss", \.loss,
      "kd: KL divergence from the float model's next-token distributions (top-k + rest mass); ce: cross-entropy on the calibration text"
    ),
    .int("seed", \.seed, "seed of the window sampler", in: 0...Int.max),
    .choice("schedule", \.schedule, "learning-rate decay after warmup, to 0 at the last step"),
    .int("warmup", \.warmup, "steps of linear warmup from 0", in: 0...1_000_000),
    .int("top-k", \.topK, "teacher tokens kept per position for loss=kd", in: 1...1_000_000),
    .int(
      "val-windows", \.valWindows,
      "calibration windows held out of training (the last ones) to validate on; the parameters of the best validation step, the input model's included, are the result (0: no validation, the last step's)",
      in: 0...65536),
    .int(
      "eval-every", \.evalEvery,
      "steps between validations (0: only before the first step and after the last)",
      in: 0...1_000_000),
    .int(
      "checkpoint-every", \.checkpointEvery,
      "steps between checkpoints (0: none); see checkpoint-dir", in: 0...1_000_000),
    .string(
      "checkpoint-dir", \.checkpointDir,
      "directory for checkpoints, kept after success (default: OUT.qopt-resume/finetune beside -o OUT, removed after success); a rerun of the same command resumes there"
    ),
  ]

  /// The learning-rate factor of step `t` (0-based) of `steps`: linear warmup, then the
  /// schedule's decay from 1 towards 0.
  func rateFactor(step t: Int) -> Double {
    if t < warmup { return Double(t + 1) / Double(warmup + 1) }
    let span = max(1, steps - warmup)
    let x = Double(t - warmup) / Double(span)
    switch schedule {
    case .constant: return 1
    case .linear: return 1 - x
    case .cosine: return 0.5 * (1 + cos(Double.pi * x))
    }
  }

  /// Every option that changes the result, and the thread count, for checkpoint fingerprints
  /// (`steps` included: the schedule depends on it; `val-windows` and `eval-every` decide the
  /// training windows and which steps can be kept).
  func fingerprint(threads: Int) -> String {
    "threads=\(threads);steps=\(steps);lr=\(lr);weight-lr=\(weightLR);batch-size=\(batchSize);seqlen=\(seqlen);"
      + "params=\(params.rawValue);loss=\(loss.rawValue);seed=\(seed);schedule=\(schedule.rawValue);warmup=\(warmup);top-k=\(topK);"
      + "val-windows=\(valWindows);eval-every=\(evalEvery)"
  }
}
