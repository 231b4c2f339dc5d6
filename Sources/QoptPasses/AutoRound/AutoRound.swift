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
      throw PassError(pass: "autoround", "group-size=0 (one scale per tensor) is not supported; use -1 (per channel) or a group size")
    }
    let selected = try WeightTargets(targets: options.targets, ignore: options.ignore).select(in: module, pass: "autoround")
    try plan.requireFloat(selected.map(\.1), pass: "autoround", each: true)
    for (_, name) in selected {
      guard let w = plan[name], w.shape.count == 2 else { continue }
      let s: QuantScheme = options.quantScheme == "nvfp4" ? .nvfp4(group: SignRoundNVFP4.group) : .int(options.scheme(columns: w.shape[1]))
      plan.quantize(name, as: s, by: "autoround")
    }
  }
) { module, options, context in
  try AutoRoundRun(module: module, options: options, context: context).run()
}

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
  var targets = ["Linear"]
  var ignore: [String] = []

  package init() {}
  package static let schema: [OptionField<AutoRoundOptions>] = [
    .choice("scheme", \.quantScheme, ["int", "nvfp4"], "int: integer codes (bits, sym, group-size, scale-dtype apply); nvfp4: FP4 E2M1 codes in groups of 16 with E4M3 scales and a global scale fixed before tuning, shared by the linears that read the same input"),
    .int("iters", \.iters, "SignSGD steps per block; 0 is plain RTN (no data needed)", in: 0...1_000_000),
    .optionalDouble("lr", \.lr, "step size of V; auto: 1/iters (2/iters when iters ≥ 1000 and bits ≤ 3)", in: 0...10),
    .optionalDouble("minmax-lr", \.minmaxLR, "step size of the clipping factors; auto: lr", in: 0...10),
    .int("bits", \.bits, "bits per weight", in: 2...8),
    .bool("sym", \.sym, "symmetric full-range signed scale (auto-round quant_tensor_sym); no-sym: asymmetric with zero point"),
    .groupSize("group-size", \.groupSize, "weights sharing one scale along a row; -1 per channel; auto: 128 where it divides the row, else 64 or 32, else per channel", in: -1...65536),
    .bool("minmax-tuning", \.minmaxTuning, "tune the per-group clipping factors α, β"),
    .int("batch-size", \.batchSize, "calibration samples per step", in: 1...65536),
    .int("seed", \.seed, "seed of the mini-batch sampler", in: 0...Int.max),
    .bool("quanted-input", \.quantedInput, "tune each block on the previous quantized block's outputs (auto-round enable_quanted_input)"),
    .bool("use-best", \.useBest, "keep the parameters of the lowest-loss iteration (otherwise the last)"),
    .choice("scale-dtype", \.scaleDType, ["f16", "f32", "bf16"], "scale precision (auto-round default f16)"),
    .string("checkpoint-dir", \.checkpointDir, "directory for per-block checkpoints; a rerun of the same command resumes there"),
    .list("targets", \.targets, "Linear, names or re: regexes of the weights to quantize"),
    .list("ignore", \.ignore, "names or re: regexes of weights to leave alone"),
  ]

  /// The integer scheme of a weight whose rows have `columns` weights.
  package func scheme(columns: Int) -> IntScheme {
    IntScheme(
      bits: bits, symmetric: sym, granularity: GroupSizeChoice.granularity(explicit: groupSize, columns: columns),
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

/// What one block's tuning reports.
package struct BlockReport {
  package var index: Int
  package var firstLoss: Double
  package var bestLoss: Double
  package var bestIteration: Int
  package var seconds: Double
}

/// One run of the pass over a module.
package final class AutoRoundRun {
  let module: Module
  let options: AutoRoundOptions
  let context: PassContext?
  /// Called after each tuning iteration with the iterations done and that iteration's loss
  /// (the terminal progress line).
  package var onIteration: ((Int, Double) -> Void)?

  init(module: Module, options: AutoRoundOptions, context: PassContext?) {
    self.module = module
    self.options = options
    self.context = context
  }

  /// A run without a pass context, for benchmarks that call `tune` on one block.
  package convenience init(module: Module, options: AutoRoundOptions) {
    self.init(module: module, options: options, context: nil)
  }

  func run() throws {
    guard let context else { return }
    BLAS.useThreads(context.threads)
    if options.quantScheme == "int" && options.groupSize == 0 {
      throw PassError(pass: "autoround", "group-size=0 (one scale per tensor) is not supported; use -1 (per channel) or a group size")
    }
    let model = try ModelBlocks(module: module, pass: "autoround")
    let selected = try WeightTargets(targets: options.targets, ignore: options.ignore).select(in: module, pass: "autoround", remark: { context.remark($0) })
    let paramByName = Dictionary(selected.map { ($0.1, $0.0) }, uniquingKeysWith: { a, _ in a })
    if options.groupSize == nil && options.quantScheme == "int" {
      let columns = selected.compactMap { module.weights[$0.1]?.shape.last }
      context.remark("autoround: " + GroupSizeChoice.summary(columns.map { ($0, GroupSizeChoice.granularity(explicit: nil, columns: $0)) }))
    }

    // iters=0 is RTN: no data, no block forward.
    if options.iters == 0 {
      for f in model.blocks {
        let targets = blockTargets(f, paramByName)
        for (l, (name, param)) in zip(try makeLinears(f, targets), targets) {
          apply(name, param, l.finalize())
        }
      }
      return
    }

    let calib = try context.analysis(CalibrationAnalysis.self)
    let t = calib.seqlen
    let budget = calib.memoryBudget
    let newStore = { ActivationStore(tokens: t, width: calib.blockInputs.width, budget: budget) }
    var xFp = calib.blockInputs
    var xQ: ActivationStore? = nil
    var reports: [BlockReport] = []
    var inputScales: [(String, Float)] = []
    var start = 0
    let checkpoint = options.checkpointDir.isEmpty ? nil : try AutoRoundCheckpoint(
      directory: options.checkpointDir, model: modelFingerprint(), data: calib.fingerprint,
      options: options.fingerprint(threads: context.threads))
    if let checkpoint, let resumed = try checkpoint.resume(samples: xFp.samples, newStore: newStore) {
      for i in 0..<resumed.next {
        for (name, q) in try checkpoint.loadBlock(i, scheme: options.scheme(columns:)) {
          guard let param = paramByName[name] else { throw PassError(pass: "autoround", "checkpoint holds \(name), which this run does not quantize") }
          apply(name, param, q)
        }
      }
      for (name, value) in resumed.inputScales {
        guard setInputScale(name, value, in: model.blocks) else {
          throw PassError(pass: "autoround", "checkpoint holds an input scale for \(name), whose linear has no static input quantization in this module")
        }
      }
      start = resumed.next
      xFp = resumed.xFp
      xQ = resumed.xQ
      reports = resumed.reports
      inputScales = resumed.inputScales
      progress("autoround: resuming at block \(start)/\(model.blocks.count) from \(options.checkpointDir)")
    }

    let total = model.blocks.count
    let runStart = monotonicSeconds()
    for bi in start..<total {
      let t0 = monotonicSeconds()
      let f = model.blocks[bi]
      let exec = try BlockExecutor(function: f, module: module)
      // 1. Reference output of the float block on float inputs (also the next float input),
      //    with float activations, as auto-round computes it.
      let y = newStore()
      try forwardAll(exec, xFp, into: y)
      // 2. Tune on the quantized inputs (the float ones for the first block), with every
      //    linear input quantized as the runtime will (static scales first calibrated on them).
      let xTune = xQ ?? xFp
      inputScales += try calibrateInputScales(exec, f, on: xTune)
      exec.quantizeInputs = true
      let targets = blockTargets(f, paramByName)
      let linears = try makeLinears(f, targets)
      exec.trainable = Set(linears.map(\.name))
      let iters = options.iters
      let blockPhase = Progress.shared.phase("autoround: block \(bi + 1)/\(total), iteration", total: iters)
      let finished = bi - start
      onIteration = { it, loss in
        let spent = monotonicSeconds() - runStart - blockPhase.elapsed
        let perBlock = finished > 0 ? spent / Double(finished) : blockPhase.elapsed / Double(max(it, 1)) * Double(iters)
        let left = perBlock * Double(total - bi) - blockPhase.elapsed
        blockPhase.step(it, "loss \(fmt(loss))", eta: max(0, left))
      }
      var report = try tune(exec, linears, x: xTune, y: y, block: bi)
      // 3. Write back the best codes and scales; the executor now runs the quantized block.
      for (l, (name, param)) in zip(linears, targets) {
        let q = l.finalize()
        apply(name, param, q)
        if let p = exec.weightPointer(name) { l.qdq(into: p) }
      }
      exec.trainable = []
      // 4. Propagate: quantized outputs become the next block's tuning inputs.
      xQ = nil
      if options.quantedInput {
        let next = newStore()
        try forwardAll(exec, xTune, into: next)
        xQ = next
      }
      xFp = y
      report.index = bi
      report.seconds = monotonicSeconds() - t0
      reports.append(report)
      let done = bi - start + 1
      let eta = (monotonicSeconds() - runStart) / Double(done) * Double(total - bi - 1)
      progress(
        "autoround: block \(bi + 1)/\(total)  loss \(fmt(report.firstLoss)) -> best \(fmt(report.bestLoss)) (iter \(report.bestIteration))  "
          + "\(String(format1: report.seconds)) s  ETA \(String(format1: eta)) s")
      if let checkpoint {
        try checkpoint.save(
          block: bi, weights: linears.map { ($0.name, module.weights.quantized($0.name)!) },  // safe: just applied
          xFp: xFp, xQ: xQ, inputScales: inputScales, reports: reports)
      }
    }
    let what = options.quantScheme == "nvfp4" ? "NVFP4" : "W\(options.bits) group \(options.groupSize.map(String.init) ?? "auto") \(options.sym ? "sym" : "asym")"
    var table = "autoround summary (\(options.iters) iters, \(what)):\n"
    table += "  block   first loss    best loss  best iter  seconds\n"
    for r in reports {
      table += "  " + pad("\(r.index)", 5) + "  " + pad(fmt(r.firstLoss), 11) + "  " + pad(fmt(r.bestLoss), 11) + "  " + pad("\(r.bestIteration)", 9) + "  " + pad(String(format1: r.seconds), 7) + "\n"
    }
    progress(table)
  }

  /// The selected linear weights read in `f`, in op order.
  private func blockTargets(_ f: Function, _ paramByName: [String: Op]) -> [(String, Op)] {
    var out: [(String, Op)] = []
    for op in f.body where op.kind == .linear {
      guard let p = op.operands[1].definingOp, let name = p.paramName, paramByName[name] != nil, !out.contains(where: { $0.0 == name }) else { continue }
      out.append((name, p))
    }
    return out
  }

  private func makeLinear(_ name: String, _ param: Op) throws -> SignRoundLinear {
    guard let t = module.weights.dense(name), t.shape.count == 2 else {
      throw PassError(pass: "autoround", "weight \(Printer.symbol(name)) is not a dense 2-D float weight (already quantized?)", at: param.location)
    }
    return SignRoundLinear(name: name, weights: t.floats(), rows: t.shape[0], cols: t.shape[1], scheme: options.scheme(columns: t.shape[1]))
  }

  /// The tunable state of each target of block `f`. NVFP4 global scales are fixed here, before
  /// tuning: each weight's own, then the minimum over the linears that read the same value
  /// (q/k/v, gate/up), as auto-round's `update_fused_layer_global_scales`.
  private func makeLinears(_ f: Function, _ targets: [(String, Op)]) throws -> [any TunableLinear] {
    guard options.quantScheme == "nvfp4" else { return try targets.map { try makeLinear($0.0, $0.1) } }
    var weights: [String: TensorData] = [:]
    for (name, param) in targets {
      guard let t = module.weights.dense(name), t.shape.count == 2 else {
        throw PassError(pass: "autoround", "weight \(Printer.symbol(name)) is not a dense 2-D float weight (already quantized?)", at: param.location)
      }
      guard t.shape[1] % SignRoundNVFP4.group == 0 else {
        throw PassError(pass: "autoround", "weight \(Printer.symbol(name)) has \(t.shape[1]) columns; nvfp4 needs a multiple of 16", at: param.location)
      }
      weights[name] = t
    }
    var floats: [String: [Float]] = [:]
    var gs: [String: Float] = [:]
    for (name, t) in weights {
      floats[name] = t.floats()
      gs[name] = SignRoundNVFP4.globalScale(of: floats[name]!)  // safe: just set
    }
    var byInput: [(Value, [String])] = []
    for op in f.body where op.kind == .linear {
      guard let n = op.operands[1].definingOp?.paramName, gs[n] != nil else { continue }
      if let i = byInput.firstIndex(where: { $0.0 === op.operands[0] }) { byInput[i].1.append(n) } else { byInput.append((op.operands[0], [n])) }
    }
    for (_, names) in byInput where names.count > 1 {
      let shared = names.compactMap { gs[$0] }.min() ?? 1
      for n in names { gs[n] = shared }
    }
    return targets.map { name, _ in
      let t = weights[name]!  // safe: every target was checked above
      return SignRoundNVFP4(name: name, weights: floats[name]!, rows: t.shape[0], cols: t.shape[1], globalScale: gs[name]!)  // safe: as above
    }
  }

  private func apply(_ name: String, _ param: Op, _ q: QuantizedTensor) {
    context?.setWeight(name, .quantized(q))
    if let r = param.result { context?.retype(r, to: r.type.with(element: .quantized(q.scheme))) }
    if case .nvfp4 = q.scheme, let g = q.globalScale?.floats().first {
      context?.setAttribute("global_scale", .float(Double(g)), on: param)
    }
  }

  /// Static input scales from the inputs tuning sees (auto-round's `act_max` hooks on the
  /// quantized-input path): the float block runs on `x` and every linear with a static
  /// (`input_scale`) or NVFP4 (`input_global_scale`) input quantization gets the scale of the
  /// largest |input| it saw, `amax / 448` or `amax / 127.5`, or `448·6 / amax`; the op and the
  /// executor both take it. Returns (weight name, scale) for checkpoints.
  private func calibrateInputScales(_ exec: BlockExecutor, _ f: Function, on x: ActivationStore) throws -> [(String, Float)] {
    let linears = f.body.filter { $0.kind == .linear && ($0.inputQuantization.map { $0.mode != .dynamic } ?? false) }
    guard !linears.isEmpty else { return [] }
    var amax: [String: Float] = [:]
    exec.quantizeInputs = false
    exec.linearInputHook = { name, p, rows, cols in
      var m = amax[name] ?? 0
      for i in 0..<(rows * cols) { let a = abs(p[i]); m = a > m ? a : m }
      amax[name] = m
    }
    defer { exec.linearInputHook = nil }
    try forwardAll(exec, x, into: nil)
    var out: [(String, Float)] = []
    for op in linears {
      guard let name = op.operands[1].definingOp?.paramName, let a = amax[name], let q = op.inputQuantization else { continue }
      let value = q.kind == .nvfp4 ? NVFP4Quantizer.globalScale(amax: a) : InputQuantization.scale(min: -a, max: a, kind: q.kind)
      _ = setInputScale(name, value, in: [f])
      if let updated = op.inputQuantization { exec.setInputQuantization(updated, forWeight: name) }
      out.append((name, value))
    }
    return out
  }

  /// Sets the static input scale (or NVFP4 input global scale) of the linears in `functions`
  /// reading weight `name`; false when none has a static input quantization.
  private func setInputScale(_ name: String, _ value: Float, in functions: [Function]) -> Bool {
    var found = false
    for f in functions {
      for op in f.body where op.kind == .linear && op.operands[1].definingOp?.paramName == name {
        guard var q = op.inputQuantization, q.mode != .dynamic else { continue }
        if q.kind == .nvfp4 { q = .nvfp4(globalScale: value) } else { q.scale = value }
        for (k, v) in q.attributes { context?.setAttribute(k, v, on: op) }
        found = true
      }
    }
    return found
  }

  /// The block on all samples of `x`, `batchSize` at a time; the outputs are appended to `out`
  /// when given. Holds one batch of inputs at a time.
  package func forwardAll(_ exec: BlockExecutor, _ x: ActivationStore, into out: ActivationStore?) throws {
    let n = x.samples, per = x.sampleFloats
    let b = max(1, min(options.batchSize, n))
    var buffer = [Float](repeating: 0, count: b * per)
    try buffer.withUnsafeMutableBufferPointer { xp in
      var s = 0
      while s < n {
        let m = min(b, n - s)
        try x.read(s..<(s + m), into: xp.baseAddress!)  // safe: n > 0
        let y = exec.forward(xp.baseAddress!, samples: m, tokens: x.tokens)  // safe: as above
        try out?.append(y, samples: m)
        s += m
      }
    }
  }

  /// The SignSGD loop of autoround.md §5 for one block: inputs `x`, targets `y` (same sample
  /// count), each mini-batch read from them.
  package func tune(_ exec: BlockExecutor, _ linears: [any TunableLinear], x: ActivationStore, y: ActivationStore, block: Int) throws -> BlockReport {
    let n = x.samples, t = x.tokens, per = x.sampleFloats
    let iters = options.iters
    let lr = options.effectiveLR
    let minmaxLR = options.minmaxLR.map { Float($0) } ?? lr
    let batch = max(1, min(options.batchSize, n))
    var sampler = IndexSampler(count: n, batch: batch, seed: UInt64(options.seed) &* 0x1_0000_0001 &+ UInt64(block))
    var xb = [Float](repeating: 0, count: batch * per)
    var yb = xb
    var dy = xb
    var gv = linears.map { [Float](repeating: 0, count: $0.rows * $0.cols) }
    var ga = linears.map { [Float](repeating: 0, count: $0.rows * $0.groupsPerRow) }
    var gb = ga
    var best = Double.infinity, first = 0.0, bestIter = 0
    var snapshot = linears.map(\.parameters)
    for it in 0..<iters {
      BLAS.adapt()  // the free cores, re-measured between iterations
      let idx = sampler.next()
      try xb.withUnsafeMutableBufferPointer { try x.read(idx, into: $0.baseAddress!) }  // safe: non-empty
      try yb.withUnsafeMutableBufferPointer { try y.read(idx, into: $0.baseAddress!) }  // safe: non-empty
      exec.timed("quantize-dequantize weights") {
        for l in linears { l.qdq(into: exec.weightPointer(l.name)!) }  // safe: the executor loaded every block weight
      }
      let out = xb.withUnsafeBufferPointer { exec.forward($0.baseAddress!, samples: batch, tokens: t) }  // safe: non-empty
      // loss = mean((ŷ − y)²); ∂loss/∂ŷ = 2(ŷ − y)/count.
      let count = batch * per
      var loss = 0.0
      yb.withUnsafeBufferPointer { yp in
        dy.withUnsafeMutableBufferPointer { dp in
          let k = 2 / Float(count)
          var acc: Float = 0
          var chunkSum = 0.0
          for i in 0..<count {
            let d = out[i] - yp[i]
            acc += d * d
            dp[i] = k * d
            if i & 4095 == 4095 { chunkSum += Double(acc); acc = 0 }
          }
          loss = (chunkSum + Double(acc)) / Double(count)
        }
      }
      if it == 0 { first = loss }
      if loss < best {
        best = loss
        bestIter = it
        snapshot = linears.map(\.parameters)
      }
      onIteration?(it + 1, loss)
      let grads = dy.withUnsafeBufferPointer { exec.backward($0.baseAddress!) }  // safe: non-empty
      let factor = 1 - Float(it) / Float(iters)
      exec.timed("SignSGD gradients + step") {
        for (k, l) in linears.enumerated() {
          gv[k].withUnsafeMutableBufferPointer { v in
            ga[k].withUnsafeMutableBufferPointer { a in
              gb[k].withUnsafeMutableBufferPointer { b in
                l.backward(dw: grads[l.name]!, dv: v.baseAddress!, dAlpha: a.baseAddress!, dBeta: b.baseAddress!)  // safe: trainable weights all get gradients
                l.step(dv: v.baseAddress!, dAlpha: a.baseAddress!, dBeta: b.baseAddress!, lr: lr * factor, minmaxLR: minmaxLR * factor, tuneMinmax: options.minmaxTuning)  // safe: as above
              }
            }
          }
        }
      }
    }
    if options.useBest {
      for (l, s) in zip(linears, snapshot) { l.parameters = s }
    } else {
      bestIter = iters - 1
    }
    return BlockReport(index: block, firstLoss: first, bestLoss: best, bestIteration: bestIter, seconds: 0)
  }

  /// A hash of the module's weights (names, shapes, bytes) and its linears' input quantization,
  /// to refuse resuming a checkpoint made from another model.
  func modelFingerprint() -> String {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    func mix(_ x: UInt64) { h = (h ^ x) &* 0x0000_0100_0000_01b3 }
    for name in module.weights.names {
      for b in name.utf8 { mix(UInt64(b)) }
      guard let e = module.weights[name] else { continue }
      for d in e.shape { mix(UInt64(d)) }
      if case .dense(let t) = e {
        t.withUnsafeBytes { raw in
          let words = raw.count / 8
          for i in stride(from: 0, to: words, by: 1) { mix(raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) }
          for i in (words * 8)..<raw.count { mix(UInt64(raw[i])) }
        }
      }
    }
    // The linears' input quantization (as `quantize-activations` left it) changes the result too.
    for f in module.functions {
      for op in f.body where op.kind == .linear {
        guard let q = op.inputQuantization else { continue }
        for b in "\(op.operands[1].definingOp?.paramName ?? "")\(q)".utf8 { mix(UInt64(b)) }
      }
    }
    let s = String(h, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
  }
}

/// auto-round's `IndexSampler`: a shuffled permutation of the sample indices consumed in order,
/// reshuffled when fewer than a full batch remain (the leftover is dropped). The shuffle is a
/// Fisher–Yates driven by SplitMix64 (not torch's generator).
struct IndexSampler {
  var indices: [Int]
  var position = 0
  let batch: Int
  var rng: SplitMix64

  init(count: Int, batch: Int, seed: UInt64) {
    indices = Array(0..<count)
    self.batch = batch
    rng = SplitMix64(seed: seed)
    shuffle()
  }

  mutating func shuffle() {
    for i in stride(from: indices.count - 1, to: 0, by: -1) {
      let j = Int(rng.next() % UInt64(i + 1))
      indices.swapAt(i, j)
    }
    position = 0
  }

  mutating func next() -> ArraySlice<Int> {
    if position + batch > indices.count { shuffle() }
    defer { position += batch }
    return indices[position..<(position + batch)]
  }
}

/// A closing line on stderr (silenced by `-quiet`).
func progress(_ line: String) {
  Progress.shared.line(line)
}

private func fmt(_ x: Double) -> String {
  if x == 0 || !x.isFinite { return "\(x)" }
  var e = Int((log10(abs(x))).rounded(.down))
  var mi = Int((abs(x) / pow(10, Double(e)) * 1000).rounded())
  if mi >= 10000 { mi /= 10; e += 1 }
  let frac = String(mi % 1000)
  return (x < 0 ? "-" : "") + "\(mi / 1000)." + String(repeating: "0", count: 3 - frac.count) + frac + "e\(e)"
}

private func pad(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }

extension String {
  /// `x` with one decimal.
  init(format1 x: Double) {
    let r = (x * 10).rounded() / 10
    let i = Int(r)
    let f = Int((abs(r - Double(i)) * 10).rounded())
    self = "\(r < 0 && i == 0 ? "-" : "")\(i).\(f)"
  }
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

  Needs `calibrate` earlier in the pipeline, except with `iters=0`, which is plain RTN and
  identical to `rtn<scale-rule=full-range>` with the same bits and group size
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

  `checkpoint-dir=DIR`: after each block the pass writes the block's codes and scales, the
  static input scales set so far and the next block's inputs there; running the same command
  again resumes after the last finished block and ends bit-identical to an uninterrupted run.
  A checkpoint made with another model, other calibration data, other options or another
  `-threads` is refused with the reason.
  Memory: one block's weights, gradients and activations (`batch-size · seqlen` rows per
  value), plus the cached activations (the block's float inputs and targets, the quantized
  inputs of this block and the next) within `calibrate`'s `memory-budget`; what does not fit
  is spilled to a temporary file and read back one sample at a time.
  """
