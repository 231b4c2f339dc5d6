import QoptIR
import QoptRuntime

/// `finetune`: quantization-aware fine-tuning of a quantized model end to end (issue 23,
/// docs/finetune.md). Every integer-quantized linear of the decoder blocks trains its scales
/// and zero points (and, with `params=scales+weights`, its float weights through the
/// straight-through estimator) by Adam on the calibration windows, against the float model's
/// next-token distributions (`loss=kd`) or the text itself (`loss=ce`); the embedding, the
/// norms and the head stay frozen. The result is ordinary quantized IR.
let finetunePass = Pass(
  "finetune",
  summary: "train the quantized model's scales (and weights) end to end by Adam on a KD or CE loss",
  details: finetuneDetails, options: FinetuneOptions.self
) { module, options, context in
  try FinetuneRun(module: module, options: options, context: context).run()
}

let finetuneDetails = """
  Runs after a quantization pass (`rtn`, `autoround`, `gptq`, …) and `calibrate`, whose windows
  it trains on: `-passes=rtn<bits=3;group-size=64>,calibrate,finetune<steps=100>`. Trains every
  integer-quantized linear weight of the blocks called by `@main` (other schemes stay as they
  are):

  - `params=scales` (default): the scales and, for asymmetric schemes, the zero points, with
    the codes fixed: `ŵ = s·(q − z)`; zero points train as floats and are rounded when stored;
  - `params=scales+weights`: also the float weights (starting from the ones the weight was
    quantized from when the pipeline still holds them, else the dequantized values), codes
    re-derived each step as `clamp(round(w/s + z))` with the rounding passed straight through
    (∂ŵ/∂w = 1 inside the clamp range, LSQ's `q − z − w/s` for the scale); the stored codes
    are re-rounded from the trained weights with the stored scales.

  Loss: `kd` (default), KL(float ‖ quantized) of the next-token distributions at every
  position of the windows, the float model's taken once before training as its `top-k` most
  likely tokens plus the rest mass (a (k+1)-bin KL with its exact gradient); it needs the
  float weights the quantization pass started from (`rtn` and `autoround` keep them within one
  pipeline). `ce`: cross-entropy of each next token of the windows.

  Each step draws `batch-size` windows from a shuffled permutation (`seed`), keeps their first
  `seqlen` tokens, runs the quantized model forward and back through the frozen head and every
  block (activation checkpointing: only each block's input is kept, the block is recomputed
  on the backward) and takes one Adam step (β 0.9/0.999, ε 1e-8) with the learning rate
  warmed up linearly over `warmup` steps, then decayed by `schedule` to 0 at the last step.
  Deterministic for given options and `-threads`.

  Validation: the last `val-windows` calibration windows (default 4) do not train; their loss
  (the same `loss`, on the first `seqlen` tokens) is measured on the input model before the
  first step, every `eval-every` steps and after the last, with the scales and zero points
  rounded as they would be stored. The parameters of the step with the lowest validation
  loss are the result, so `finetune` never returns a model worse on it than the one it was
  given: when no step beats the input model, its weights are left as they came, byte for
  byte. `val-windows=0` trains on every window and returns the last step.

  Checkpoints every `checkpoint-every` steps (the parameters, Adam moments and best step) as
  `autoround` does: in `checkpoint-dir`, else `OUT.qopt-resume/finetune` beside `-o OUT`
  (removed once the output is written); the same command resumes from it and ends
  bit-identical to an uninterrupted run; one made with another model, other calibration data, other options or
  another `-threads` is refused with the reason. Prints each step's loss (and validation
  loss), learning rate and ETA to stderr.
  Memory: the model's weights once in f32, `blocks + 1` block inputs and the logits with their
  gradient for one batch, one block's activations; with `params=scales+weights` 13 bytes per
  trained weight more, and 4 more for the best step's weights.
  """

/// One run of `finetune` over a module.
final class FinetuneRun {
  let module: Module
  let options: FinetuneOptions
  let context: PassContext

  init(module: Module, options: FinetuneOptions, context: PassContext) {
    self.module = module
    self.options = options
    self.context = context
  }

  func run() throws {
    BLAS.useThreads(context.threads)
    let hasInt = module.weights.names.contains {
      if case .int? = module.weights.quantized($0)?.scheme { return true }
      return false
    }
    guard hasInt else {
      throw context.error(
        "the model has no integer-quantized weights to train; put a quantization pass (rtn, gptq, autoround) before finetune"
      )
    }
    let calib = try context.analysis(CalibrationAnalysis.self)
    let model = try WholeModel(
      module: module, trainWeights: options.params == .scalesAndWeights)
    model.threads = context.threads
    let linears = model.allLinears
    guard !linears.isEmpty else {
      throw context.error(
        "no linear of the decoder blocks has integer-quantized weights to train")
    }
    let full = calib.seqlen
    let t = options.seqlen == 0 ? full : options.seqlen
    guard t <= full else {
      throw context.error("seqlen=\(t) exceeds calibrate's windows of \(full) tokens")
    }
    guard t >= 2 else { throw context.error("seqlen must be at least 2") }
    let x = calib.blockInputs
    let n = x.samples
    let h = model.hidden
    // The last `v` windows validate; training draws from the others.
    let v = options.valWindows
    guard v < n else {
      throw context.error(
        "val-windows=\(v) leaves no training window of calibrate's \(n); calibrate more samples or lower val-windows (0: no validation)"
      )
    }
    let nTrain = n - v
    let batch = min(options.batchSize, nTrain)
    let windows = calib.windows

    /// Windows `idx`, their first `t` rows, into `out`.
    var sample = [Float](repeating: 0, count: x.sampleFloats)
    func read(_ idx: [Int], into out: inout [Float]) throws {
      for (k, i) in idx.enumerated() {
        // safe: non-empty
        try sample.withUnsafeMutableBufferPointer { try x.read(i, into: $0.baseAddress!) }
        for r in 0..<(t * h) { out[k * t * h + r] = sample[r] }
      }
    }

    var teacher = TeacherTopK(k: options.topK)
    if options.loss == .kd {
      let t0 = monotonicSeconds()
      try model.useFloatWeights(true)
      var xb = [Float](repeating: 0, count: batch * t * h)
      var s = 0
      while s < n {
        let m = min(batch, n - s)
        try read(Array(s..<(s + m)), into: &xb)
        // safe: non-empty
        let z = xb.withUnsafeBufferPointer { model.logits($0.baseAddress!, samples: m, tokens: t) }
        teacher.append(z, rows: m * t, vocab: model.vocab)
        s += m
      }
      model.tail.releaseActivations()
      try model.useFloatWeights(false)
      progress(
        "finetune: float model's top-\(options.topK) next-token distributions of \(n)×\(t) positions cached (\(String(format1: monotonicSeconds() - t0)) s)"
      )
    }

    // Checkpoints: the explicit directory, else the default one beside -o OUT.
    let explicit = !options.checkpointDir.isEmpty
    let directory =
      options.checkpointEvery == 0
      ? nil : explicit ? options.checkpointDir : context.defaultCheckpointDirectory
    let checkpoint = directory.map {
      FinetuneCheckpoint(
        directory: $0, model: fingerprint(), data: calib.fingerprint,
        options: options.fingerprint(threads: context.threads),
        wayOut: explicit
          ? "remove the directory or use another checkpoint-dir"
          : "add -fresh to discard it and start over (or remove the directory)")
    }
    var sampler = IndexSampler(count: nTrain, batch: batch, seed: UInt64(options.seed))
    var losses: [Double] = []
    var best = FinetuneBest()
    var start = 0
    if let checkpoint, let resumed = try checkpoint.resume(into: linears) {
      start = resumed.step
      losses = resumed.losses
      best = resumed.best
      for _ in 0..<start { _ = sampler.next() }
      progress("finetune: resuming at step \(start)/\(options.steps) from \(checkpoint.directory)")
    }

    /// The loss (`options.loss`) of the validation windows under the weights the executors
    /// hold, forward only, `batch` windows at a time.
    var scratch = [Float]()
    func validationLoss() throws -> Double {
      var xb = [Float](repeating: 0, count: batch * t * h)
      if scratch.isEmpty { scratch = [Float](repeating: 0, count: t * model.vocab) }
      var total = 0.0
      var s = nTrain
      while s < n {
        let idx = Array(s..<min(s + batch, n))
        try read(idx, into: &xb)
        // safe: non-empty
        let z = xb.withUnsafeBufferPointer {
          model.logits($0.baseAddress!, samples: idx.count, tokens: t)
        }
        let vocab = model.vocab
        scratch.withUnsafeMutableBufferPointer { dz in
          for (k, i) in idx.enumerated() {
            let zk = z + k * t * vocab
            switch options.loss {
            case .kd:
              total += FinetuneLoss.kd(
                logits: zk, rows: t, vocab: vocab, teacher: teacher, firstPosition: i * t,
                dz: dz.baseAddress!)  // safe: t · vocab floats
            case .ce:
              total += FinetuneLoss.ce(
                logits: zk, samples: 1, tokens: t, vocab: vocab,
                targets: [Array(windows[i].prefix(t))], dz: dz.baseAddress!)  // safe: as above
            }
          }
        }
        s += idx.count
      }
      model.tail.releaseActivations()
      return total / Double(v)
    }
    /// Validates the weights as they would be stored after `step` steps (0: the input model)
    /// and keeps the parameters when they are the best so far.
    func validate(step: Int) throws -> String {
      if step == 0 { model.writeInputWeights() } else { model.writeStoredWeights() }
      let loss = try validationLoss()
      let kept = best.record(step: step, loss: loss, linears: linears)
      return "val \(lossText(loss))\(kept ? " (best)" : "")"
    }
    if v > 0 && start == 0 {
      let t0 = monotonicSeconds()
      let text = try validate(step: 0)
      progress(
        "finetune: validation on \(v) held-out windows of \(t) tokens, \(nTrain) windows train; step 0 (input model): \(text) (\(String(format1: monotonicSeconds() - t0)) s)"
      )
    }
    func kept(_ done: Int) {
      guard let directory else { return }
      context.checkpointSaved(
        BlockCheckpointProgress(
          pass: "finetune", directory: directory, done: done, total: options.steps,
          isDefault: !explicit, unit: "steps"))
    }
    kept(start)

    var xb = [Float](repeating: 0, count: batch * t * h)
    let phase = Progress.shared.phase("finetune: step", total: options.steps)
    let runStart = monotonicSeconds()
    for step in start..<options.steps {
      let idx = Array(sampler.next())
      try read(idx, into: &xb)
      model.writeWeights()
      for l in linears { l.clearGradients() }
      let vocab = model.vocab
      let loss = xb.withUnsafeBufferPointer { xp in
        // safe: non-empty
        model.lossAndGradients(xp.baseAddress!, samples: batch, tokens: t) { z, dz in
          switch options.loss {
          case .ce:
            return FinetuneLoss.ce(
              logits: z, samples: batch, tokens: t, vocab: vocab,
              targets: idx.map { Array(windows[$0].prefix(t)) }, dz: dz)
          case .kd:
            var total = 0.0
            for (k, i) in idx.enumerated() {
              total += FinetuneLoss.kd(
                logits: z + k * t * vocab, rows: t, vocab: vocab, teacher: teacher,
                firstPosition: i * t, dz: dz + k * t * vocab)
            }
            let f = 1 / Float(batch)
            for j in 0..<(batch * t * vocab) { dz[j] *= f }
            return total / Double(batch)
          }
        }
      }
      let factor = options.rateFactor(step: step)
      for l in linears {
        l.adam(
          t: step + 1, lr: Float(options.lr * factor), weightLR: Float(options.weightLR * factor))
      }
      losses.append(loss)
      let done = step + 1
      let evaluates =
        v > 0
        && (done == options.steps || (options.evalEvery > 0 && done % options.evalEvery == 0))
      var val = ""
      if evaluates { val = "  " + (try validate(step: done)) }
      let elapsed = monotonicSeconds() - runStart
      let eta = elapsed / Double(done - start) * Double(options.steps - done)
      phase.step(done, "loss \(lossText(loss))", eta: eta)
      progress(
        "finetune: step \(done)/\(options.steps)  loss \(lossText(loss))\(val)  lr \(lossText(options.lr * factor))  \(String(format1: elapsed)) s  ETA \(String(format1: eta)) s"
      )
      if let checkpoint, options.checkpointEvery > 0,
        done % options.checkpointEvery == 0 || done == options.steps
      {
        try checkpoint.save(step: done, linears: linears, losses: losses, best: best)
        kept(done)
      }
    }

    // With validation the best step's parameters are the result; step 0 leaves the weights
    // as they came.
    if v > 0, let kept = best.parameters {
      for (l, p) in zip(linears, kept) { l.parameters = p }
    }
    if v == 0 || best.step > 0 {
      for l in linears {
        var q = l.freeze()
        q.source = module.weights.quantized(l.name)?.source
        context.setWeight(l.name, .quantized(q))
      }
    }
    if let first = losses.first, let last = losses.last {
      let tail = losses.suffix(10)
      progress(
        "finetune: \(options.steps) steps, loss \(lossText(first)) -> \(lossText(last)) (mean of the last \(tail.count): \(lossText(tail.reduce(0, +) / Double(tail.count))))"
      )
    }
    if v > 0, let first = best.history.first, let last = best.history.last {
      progress(
        "finetune: validation loss \(lossText(first.loss)) at step \(first.step) -> \(lossText(last.loss)) at step \(last.step); kept step \(best.step)\(best.step == 0 ? " (the input model, unchanged)" : "") with \(lossText(best.loss))"
      )
    }
  }

  /// A hash of the module's weights: names, shapes, and the bytes of dense weights and of
  /// quantized codes, scales and zero points (the state training starts from).
  func fingerprint() -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    func mix(_ x: UInt64) { hash = (hash ^ x) &* 0x0000_0100_0000_01b3 }
    func mix(_ t: TensorData) {
      t.withUnsafeBytes { raw in
        let words = raw.count / 8
        for i in 0..<words { mix(raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) }
        for i in (words * 8)..<raw.count { mix(UInt64(raw[i])) }
      }
    }
    for name in module.weights.names {
      for b in name.utf8 { mix(UInt64(b)) }
      guard let e = module.weights[name] else { continue }
      for d in e.shape { mix(UInt64(d)) }
      switch e {
      case .dense(let t): mix(t)
      case .quantized(let q):
        mix(q.codes)
        mix(q.scale)
        if let z = q.zeroPoint { mix(z) }
      }
    }
    let s = String(hash, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
  }
}
