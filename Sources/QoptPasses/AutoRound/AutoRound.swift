import QoptIR
import QoptRuntime

#if canImport(Glibc)
  import Glibc
#endif

/// `autoround`: AutoRound / SignRound (autoround.md) block by block. For each decoder block the
/// float block's output on float inputs is the target; every selected linear gets a rounding
/// offset V and min/max clipping factors, tuned by SignSGD through the quantize-dequantize
/// forward with straight-through rounding; the best iteration's codes and scales land in the
/// IR exactly as `rtn` writes them, and the quantized block's outputs feed the next block.
let autoRoundPass = Pass(
  "autoround", summary: "AutoRound (SignSGD over rounding offsets and clipping) block by block",
  details: autoRoundDetails, options: AutoRoundOptions.self,
  plan: { module, options, plan in
    if options.quantScheme == "int" && options.groupSize == 0 {
      throw PassError(
        "group-size=0 (one scale per tensor) is not supported; use -1 (per channel) or a group size"
      )
    }
    let selected = try WeightTargets(targets: options.targets, ignore: options.ignore).select(
      in: module)
    try plan.requireFloat(selected.map(\.1), pass: "autoround", each: true)
    for (_, name) in selected {
      guard let w = plan[name], w.shape.count == 2 else { continue }
      let s: QuantScheme =
        options.quantScheme == "nvfp4"
        ? .nvfp4(group: SignRoundNVFP4.group) : .int(options.scheme(columns: w.shape[1]))
      plan.quantize(name, as: s, by: "autoround")
    }
  }
) { module, options, context in
  try AutoRoundRun(module: module, options: options, context: context).run()
}

let autoRoundDetails = """
  AutoRound (SignRound) as auto-round 0.15.1 runs it (see the algorithm reference): for each
  block called by `@main`, in order,

  1. the float block's output on the float inputs is the target;
  2. every selected linear (`targets`, default every linear except the output head) gets a
     rounding offset V per weight (start 0) and clipping factors α (max side), β (min side)
     per group (start 1, clamped to [0, 1] before each use); its weight is replaced by
     `scale · clamp(round(w/scale + V), …)` with the full-range signed scale
     (`max_v / 2^(b−1)`, `max_v` = `+β·|min|` or `−α·max`, whichever magnitude is larger,
     rounded to `scale-dtype`, magnitude ≥ 1e-5, ≥ 1e-8 for f32 scales) or, with `no-sym`,
     the asymmetric scale and zero point; rounding passes gradients straight through;
  3. `iters` SignSGD steps `p ← p − lr_t · sign(∂L/∂p)` with `lr_t = lr · (1 − t/iters)` on
     mini-batches of `batch-size` samples drawn from a shuffled permutation (`seed`); L is the
     mean squared error between the block's output on the quantized inputs (the previous
     quantized block's outputs; the float ones for the first block) and the target;
  4. the parameters of the iteration with the lowest loss (measured before its step) are kept
     and written as codes and scales exactly as `rtn<scale-rule=full-range>` writes them;
  5. the quantized block's outputs on its tuning inputs become the next block's inputs.

  Needs `calibrate` earlier in the pipeline, except with `iters=0`, which is RTN as
  auto-round's `iters=0`: with `calibrate` earlier (and `opt-rtn`, the default) integer
  symmetric weights below 8 bits get auto-round's optimized RTN, identical to
  `rtn<weighted;scale-rule=full-range>` with the same bits and group size (importance-weighted
  scale search, see `rtn`); otherwise plain RTN, identical to `rtn<scale-rule=full-range>`
  (`scheme=nvfp4`: to `rtn<scheme=nvfp4>,fuse-scales`). Prints one line per block to stderr
  (losses at the first and best iteration, seconds, ETA) and a summary; on a terminal a
  status line also shows the iteration, its loss and the run's ETA.

  Activation quantization: linears that carry `input_*` attributes (`quantize-activations`
  earlier in the pipeline) quantize their inputs while tuning exactly as the runtime does, with
  a straight-through gradient, so the loss is the quantized model's block error. Static scales
  (`input_scale`, and `input_global_scale` of NVFP4 inputs) are recomputed per block, before
  tuning, from the largest |input| each linear sees when the float block runs on the tuning
  inputs (auto-round's `act_max` on the quantized-input path); the float reference output is
  computed with float activations. `iters=0` leaves them as they are.

  Checkpoints: after each block the pass saves the block's codes and scales, the static input
  scales set so far and the next block's inputs (each file renamed into place, the state
  last). With `-o OUT` it does so by default in `OUT.qopt-resume/autoround`, deleted once the
  output is written; Ctrl-C (or SIGTERM) exits 130 (143) with no output and prints the blocks
  kept and the command that resumes. `checkpoint-dir=DIR` checkpoints in DIR instead (kept
  after success). Running the same command again resumes after the last finished block and
  ends bit-identical to an uninterrupted run. A checkpoint made with another model, other
  calibration data, other options or another `-threads` is refused with the reason (a
  default one: add `-fresh` to start over; `-no-checkpoint` keeps none). The checkpoint
  holds two sets of `samples × seqlen × hidden` f32 inputs (four while a block is saved)
  and one byte per quantized weight.
  Memory: one block's weights, gradients and activations (`batch-size · seqlen` rows per
  value), plus the cached activations (the block's float inputs and targets, the quantized
  inputs of this block and the next) within `calibrate`'s `memory-budget`; what does not fit
  is spilled to a temporary file and read back one sample at a time.
  """
