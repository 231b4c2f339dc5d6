import QoptIR
import QoptRuntime

// The block-by-block driver of `gptq`: Hessians from the block's inputs, the solver per
// linear, write-back, and the quantized block's outputs as the next block's inputs.

/// One run of `gptq` over a module.
final class GPTQRun {
  let module: Module
  let options: GPTQOptions
  let context: PassContext
  /// Each selected weight's options: the pass's, or its `assign-schemes` choice.
  private var perWeight: [String: RTNOptions] = [:]

  init(module: Module, options: GPTQOptions, context: PassContext) {
    self.module = module
    self.options = options
    self.context = context
  }

  func run() throws {
    BLAS.useThreads(context.threads)
    let w = options.weights
    let model = try ModelBlocks(module: module)
    let selected = try WeightTargets(targets: w.targets, ignore: w.ignore).select(
      in: module, context: context)
    try WeightPlan(module).requireFloat(selected.map(\.1), pass: context.pass, each: true)
    // An `assign-schemes` choice replaces the pass's own scheme per weight (`float`, f16,
    // bf16, f32: the weight is left alone), as in `rtn`.
    // An assigned ggml type gptq has no grid for stays float, annotated, for the GGUF backend
    // to encode (importance-weighted, as without gptq).
    var kept: [(Op, String)] = []
    var toBackend: [String: [String]] = [:]
    for (param, name) in selected {
      guard let o = try w.assigned(to: param, name: name) else { continue }
      if let kind = o.scheme.ggml, param.attributes[AssignedScheme.attribute] != nil,
        !GGMLGridRounder.supported.contains(kind)
      {
        toBackend[kind.name, default: []].append(name)
        continue
      }
      perWeight[name] = o
      kept.append((param, name))
    }
    if !toBackend.isEmpty {
      let kinds = toBackend.keys.sorted()
      let list = kinds.map { "\(toBackend[$0]!.count) \($0)" }  // safe: a key
      context.remark(
        "left \(list.joined(separator: ", ")) weight(s) (e.g. \(toBackend[kinds[0]]![0])) float for the backend to encode: gptq rounds toward \(GGMLGridRounder.supported.map(\.name).joined(separator: ", ")) only"
      )
    }
    let paramByName = Dictionary(kept.map { ($0.1, $0.0) }, uniquingKeysWith: { a, _ in a })
    // The group sizes `auto` chose, for the weights that use the pass's own options.
    let auto = kept.filter { $0.0.attributes[AssignedScheme.attribute] == nil }
    if w.groupSize == nil && w.scheme != .nvfp4 && w.scheme.ggml == nil && !auto.isEmpty {
      let columns = auto.compactMap { module.weights[$0.1]?.shape.last }
      context.remark(
        GroupSizeChoice.summary(
          columns.map {
            ($0, GroupSizeChoice.granularity(explicit: nil, columns: $0, scheme: w.scheme.rawValue))
          }))
    }
    let calib = try context.analysis(CalibrationAnalysis.self)
    // `calibrate`'s data shards: the Hessians are summed per shard and added in shard order
    // (`GPTQHessianPartial`); a shard's run writes its sums, a run with partials reads them.
    if calib.shards.count > 1 || !calib.partials.isEmpty {
      guard options.floatInputs else {
        throw context.error(
          "calibrate's data-shards=\(calib.shards.count)\(calib.partials.isEmpty ? "" : " and partials") need gptq<float-inputs>: without it a block's Hessian comes from the rounded blocks before it, which no data shard has"
        )
      }
      guard !options.trueSequential else {
        throw context.error(
          "calibrate's data shards cannot split gptq<true-sequential>: a stage's Hessian comes from the inputs the rounded earlier stages of its block produce"
        )
      }
    }
    if calib.shard >= 0 {
      // Scales folded from shard K's statistics alone are not the merge run's.
      guard !calib.foldedScales else {
        throw context.error(
          "a data shard's run (calibrate<…;shard=\(calib.shard)>) cannot follow awq or smoothquant: they folded scales from shard \(calib.shard)'s statistics alone (run them after the merge, or without data shards)"
        )
      }
      return try writeShard(model, paramByName, calib)
    }
    let merging = !calib.partials.isEmpty
    // One process over N > 1 shards: no forward batch crosses a shard's end.
    let shards = calib.shards
    let ends = shards.count > 1 ? (0..<shards.count).map { shards.range($0).upperBound } : []
    var x = calib.blockInputs
    // A plan's cache phase: store the float inputs of the units' first blocks; solve nothing.
    if let cache = context.blockInputCache, !cache.blocksToWrite.isEmpty {
      guard options.floatInputs else {
        throw context.error("the cache phase needs float-inputs (the plan refuses gptq without)")
      }
      try cache.writePrefix(
        model, module, from: x, batch: options.batchSize, data: calib.fingerprint,
        budget: calib.memoryBudget, context: context)
      return
    }
    // A unit of a plan reads block A's float inputs from the cache phase when they are there.
    var from = 0
    if options.floatInputs, !merging,
      let stored = try context.blockInputCache?.readFirst(
        like: x, batch: options.batchSize, data: calib.fingerprint, budget: calib.memoryBudget,
        context: context)
    {
      (x, from) = (stored.inputs, stored.block)
    }
    let total = model.blocks.count
    let phase = Progress.shared.phase("gptq: block", total: total)
    defer { phase.close() }
    let runStart = monotonicSeconds()
    var fallbacks: [String] = []
    var idle: [String] = []
    // `-blocks=A..B`: blocks before A stay float and only feed block A; none after B runs.
    let selection = context.blocks?.range ?? 0...(total - 1)
    for (bi, f) in model.blocks.enumerated() where bi <= selection.upperBound && bi >= from {
      let t0 = monotonicSeconds()
      let exec = try BlockExecutor(function: f, module: module)
      if bi < selection.lowerBound {
        if !merging { x = try propagate(exec, x, calib.memoryBudget, bi, phase, ends) }
        continue
      }
      phase.step(bi, "Hessians")
      let targets = f.linearWeights(in: paramByName)
      var loss = 0.0
      // float-inputs: the next block's inputs are this float block's outputs on float inputs.
      // With partials the Hessians are read, not forwarded for: no block inputs are needed.
      let next =
        options.floatInputs && bi + 1 < total && !merging
        ? try propagate(exec, x, calib.memoryBudget, bi, phase, ends) : nil
      let stages = options.trueSequential ? GPTQStages.split(targets, in: f) : [targets]
      for (si, stage) in stages.enumerated() {
        if stages.count > 1 { phase.step(bi, "stage \(si + 1)/\(stages.count)") }
        // Later stages see the inputs the already-rounded linears of this block produce.
        let (sums, owner) =
          merging
          ? try readHessians(f, stage.map(\.0), block: bi, calib)
          : try collectHessians(exec, f, stage.map(\.0), x: x, ends: ends)
        let hessians = sums.mapValues { $0.matrix() }
        loss += try solve(stage, hessians, owner, exec, f, paramByName, &fallbacks, &idle)
      }
      // Otherwise the quantized block's outputs on its (quantized) inputs feed the next block.
      if bi + 1 < total && !merging {
        x = try next ?? propagate(exec, x, calib.memoryBudget, bi, phase, ends)
      }
      let seconds = monotonicSeconds() - t0
      let eta = (monotonicSeconds() - runStart) / Double(bi + 1) * Double(total - bi - 1)
      progress(
        "gptq: block \(bi + 1)/\(total)  \(targets.count) linears  loss \(lossText(loss))  \(String(format1: seconds)) s  ETA \(String(format1: eta)) s"
      )
    }
    if !idle.isEmpty {
      context.warning(
        "\(idle.count) weight(s) (e.g. \(idle[0])) saw no calibration tokens (MoE experts the router never chose); they were rounded to nearest"
      )
    }
    if !fallbacks.isEmpty {
      context.warning(
        "the dampened Hessian of \(fallbacks.count) weight(s) (e.g. \(fallbacks[0])) is not positive definite; they were rounded to nearest (raise damp, or calibrate on more data)"
      )
    }
  }

  /// The outputs of the block in `exec` (as it now is) on `x`.
  private func propagate(
    _ exec: BlockExecutor, _ x: ActivationStore, _ budget: MemoryBudget, _ bi: Int,
    _ phase: Progress.Phase, _ ends: [Int] = []
  ) throws -> ActivationStore {
    phase.step(bi, "propagating")
    let next = ActivationStore(tokens: x.tokens, width: x.width, budget: budget)
    try exec.forward(all: x, batch: options.batchSize, into: next, ends: ends)
    return next
  }

  /// Solves each linear of `targets` with its input's Hessian and writes the rounded weights
  /// to the IR and into `exec` (so later stages and the next block see them); the summed loss.
  private func solve(
    _ targets: [(String, Op)], _ hessians: [String: [Float]], _ owner: [String: String],
    _ exec: BlockExecutor, _ f: Function, _ paramByName: [String: Op],
    _ fallbacks: inout [String], _ idle: inout [String]
  ) throws -> Double {
    var loss = 0.0
    for (name, param) in targets {
      guard let weight = module.weights.dense(name), weight.shape.count == 2,
        let key = owner[name]
      else {
        throw context.error(
          "weight \(Printer.symbol(name)) is not a dense 2-D float weight", at: param)
      }
      let (rows, cols) = (weight.shape[0], weight.shape[1])
      // A MoE expert no calibration token reached has no Hessian: with H = I the solver
      // pushes no error anywhere, which is round-to-nearest on the same grid.
      let h = hessians[key] ?? identity(cols)
      if hessians[key] == nil { idle.append(name) }
      var rounder = try makeRounder(name, param, weight, in: f, paramByName, hessian: h)
      let r = options.solver.solve(
        weight.floats(), rows: rows, cols: cols, hessian: h, rounder: &rounder)
      if r.fellBack { fallbacks.append(name) }
      loss += r.loss
      apply(name, param, r.quantized)
      if let p = exec.weightPointer(name) {
        r.dequantized.withUnsafeBufferPointer {
          p.update(from: $0.baseAddress!, count: rows * cols)
        }
      }  // safe: non-empty weight
    }
    return loss
  }

  /// `GPTQHessian` for every input a selected linear of `f` reads (one per input value: q, k,
  /// v share one), from the block run on `x`; `owner` maps each weight to its input's key.
  /// With shard `ends`, each shard's sums are accumulated apart (no batch crossing an end) and
  /// added in shard order; an input a shard never reached (a MoE expert) adds nothing.
  func collectHessians(
    _ exec: BlockExecutor, _ f: Function, _ names: [String], x: ActivationStore, ends: [Int]
  ) throws -> (hessians: [String: GPTQHessian], owner: [String: String]) {
    let owner = inputOwners(f, names)
    var parts = [[String: GPTQHessian]](repeating: [:], count: max(ends.count, 1))
    var part = 0
    let (tokens, sinkWeight) = (x.tokens, options.sinkWeight)
    exec.linearInputHook = { name, p, rows, cols in
      guard owner[name] == name, rows > 0 else { return }
      var h =
        parts[part][name]
        ?? GPTQHessian(columns: cols, tokensPerWindow: tokens, sinkWeight: sinkWeight)
      h.add(p, count: rows)
      parts[part][name] = h
    }
    defer { exec.linearInputHook = nil }
    try exec.forward(
      all: x, batch: options.batchSize, into: nil, ends: ends,
      willRun: { r in part = ends.firstIndex { $0 > r.lowerBound } ?? 0 })
    return (GPTQHessianPartial.add(parts), owner)
  }

  /// Maps each of `names` to the key of the input it reads: the first of `names` (in `f`'s
  /// order) reading the same value.
  func inputOwners(_ f: Function, _ names: [String]) -> [String: String] {
    var owner: [String: String] = [:]
    var byInput: [ObjectIdentifier: String] = [:]
    for op in f.body where op.kind == .linear {
      guard let n = op.operands[1].definingOp?.paramName, names.contains(n), owner[n] == nil else {
        continue
      }
      let id = ObjectIdentifier(op.operands[0])
      owner[n] = byInput[id] ?? n
      byInput[id] = owner[n]
    }
    return owner
  }

  /// The grid a weight is rounded onto: the scheme `rtn` would use for it.
  private func makeRounder(
    _ name: String, _ param: Op, _ weight: TensorData, in f: Function,
    _ paramByName: [String: Op], hessian h: [Float]
  ) throws -> any GridRounder {
    let w = perWeight[name] ?? options.weights
    let (rows, cols) = (weight.shape[0], weight.shape[1])
    if let requested = w.scheme.ggml {
      let importance = try GGMLRounding.importance(module, name: name, columns: cols, param: param)
      guard
        let kind = GGMLRounding.kind(
          requested, columns: cols, name: name, param: param, context: context)
      else {
        throw context.error(
          "weight \(Printer.symbol(name)) has \(cols) columns; no ggml block fits (leave it out with ignore=)",
          at: param)
      }
      guard let r = GGMLGridRounder(kind: kind, rows: rows, cols: cols, importance: importance)
      else {
        throw context.error(
          "weight \(Printer.symbol(name)): gptq toward \(kind.name) is not available (it rounds toward \(GGMLGridRounder.supported.map(\.name).joined(separator: ", ")))",
          at: param)
      }
      return r
    }
    let scheme = try w.scheme(columns: cols)
    switch w.scheme {
    case .fp8:
      return FP8GridRounder(rows: rows, cols: cols, granularity: scheme.granularity)
    case .nvfp4:
      guard cols % NVFP4Quantizer.groupSize == 0 else {
        throw context.error(
          "weight \(Printer.symbol(name)) has \(cols) columns; nvfp4 needs a multiple of 16",
          at: param)
      }
      return NVFP4GridRounder(
        rows: rows, cols: cols, globalScale: fusedGlobalScale(name, in: f, paramByName),
        importance: options.searchScale ? (0..<cols).map { h[$0 * cols + $0] } : nil)
    case .int:
      let s = try w.intScheme(scheme, param: param, name: name, dtype: weight.dtype)
      // The scale search weighs each column by its input's mean x² (H's diagonal).
      // Only where the search is defined (sym full-range, per group or row); else the rule's.
      let searchable = s.symmetric && w.scaleRule == .fullRange && s.granularity != .tensor
      let importance =
        options.searchScale && searchable ? (0..<cols).map { h[$0 * cols + $0] } : nil
      return IntGridRounder(
        quantizer: IntQuantizer(scheme: s, rule: w.scaleRule), rows: rows, cols: cols,
        importance: importance, threads: context.threads)
    default: preconditionFailure("ggml schemes are handled above")
    }
  }

  /// The NVFP4 global scale of `name`, fixed before rounding: the smallest over the selected
  /// linears of `f` that read the same input (what `fuse-scales` will give them, so it keeps
  /// the rounded codes).
  private func fusedGlobalScale(
    _ name: String, in f: Function, _ paramByName: [String: Op]
  ) -> Float {
    let linears = f.body.filter { $0.kind == .linear }
    let inputs = linears.filter { $0.operands[1].definingOp?.paramName == name }.map {
      ObjectIdentifier($0.operands[0])
    }
    var gs = Float.infinity
    for op in linears where inputs.contains(ObjectIdentifier(op.operands[0])) {
      guard let n = op.operands[1].definingOp?.paramName, paramByName[n] != nil,
        perWeight[n]?.scheme ?? options.weights.scheme == .nvfp4,
        let t = module.weights.dense(n)
      else { continue }
      gs = min(
        gs,
        t.floats().withUnsafeBufferPointer {
          NVFP4Quantizer.globalScale(amax: NVFP4Quantizer.amax($0))
        })
    }
    return gs.isFinite ? gs : 1
  }

  private func apply(_ name: String, _ param: Op, _ q: QuantizedTensor) {
    var q = q
    // The float weights stay at hand (never saved) for `finetune`'s float teacher.
    q.source = q.source ?? module.weights.dense(name) ?? module.weights.quantized(name)?.source
    context.setWeight(name, .quantized(q))
    if let r = param.result { context.retype(r, to: r.type.with(element: .quantized(q.scheme))) }
    if case .nvfp4 = q.scheme, let g = q.globalScale?.floats().first {
      context.setAttribute("global_scale", .float(Double(g)), on: param)
    }
  }
}

/// The `n × n` identity, row-major.
private func identity(_ n: Int) -> [Float] {
  var m = [Float](repeating: 0, count: n * n)
  for i in 0..<n { m[i * n + i] = 1 }
  return m
}
