import QoptIR
import QoptRuntime

#if canImport(Glibc)
  import Glibc
#endif

// The block-by-block driver of `autoround`: reference outputs, tuning, write-back,
// propagation to the next block and the per-block checkpoint.

/// One run of the pass over a module.
package final class AutoRoundRun {
  let module: Module
  let options: AutoRoundOptions
  let context: PassContext?
  /// Each selected weight's options: the pass's, or its `assign-schemes` choice.
  private var perWeight: [String: AutoRoundOptions] = [:]
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
      throw PassError(
        "group-size=0 (one scale per tensor) is not supported; use -1 (per channel) or a group size"
      )
    }
    let model = try ModelBlocks(module: module)
    let selected = try WeightTargets(targets: options.targets, ignore: options.ignore).select(
      in: module, context: context)
    // An `assign-schemes` choice replaces the pass's own bits and group size per weight;
    // `float` leaves the weight alone (`AutoRoundOptions.assigned`).
    var chosen: [(Op, String)] = []
    for (param, name) in selected {
      guard let o = try options.assigned(to: param, name: name) else { continue }
      perWeight[name] = o
      chosen.append((param, name))
    }
    let paramByName = Dictionary(chosen.map { ($0.1, $0.0) }, uniquingKeysWith: { a, _ in a })
    let auto = chosen.filter { $0.0.attributes[AssignedScheme.attribute] == nil }
    if options.groupSize == nil && options.quantScheme == "int" && !auto.isEmpty {
      let columns = auto.compactMap { module.weights[$0.1]?.shape.last }
      context.remark(
        GroupSizeChoice.summary(
          columns.map { ($0, GroupSizeChoice.granularity(explicit: nil, columns: $0)) }))
    }

    // iters=0 is RTN, optimized (importance-weighted scales) when calibrate's statistics are
    // there and the scheme has the search, as auto-round's default (autoround.md §10).
    if options.iters == 0 {
      let stats =
        options.optRTN && options.quantScheme == "int"
        ? (try? context.analysis(CalibrationAnalysis.self))?.linearStats : nil
      for f in model.blocks {
        let targets = f.linearWeights(in: paramByName)
        for (l, (name, param)) in zip(try makeLinears(f, targets), targets) {
          let o = weightOptions(name)
          if o.sym && o.bits < 8, let st = stats?[name], let t = module.weights.dense(name) {
            let quantizer = IntQuantizer(scheme: o.scheme(columns: l.cols), rule: .fullRange)
            apply(
              name, param,
              t.floats().withUnsafeBufferPointer {
                quantizer.quantizeWeighted(
                  $0, rows: l.rows, cols: l.cols, importance: st.meanSquare,
                  threads: context.threads)
              })
          } else {
            apply(name, param, l.finalize())
          }
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
    // A plan's cache phase: store the float inputs of the units' first blocks; tune nothing.
    if let cache = context.blockInputCache, !cache.blocksToWrite.isEmpty {
      try cache.writePrefix(
        model, module, from: xFp, batch: options.batchSize, data: calib.fingerprint,
        budget: budget, context: context)
      return
    }
    // The explicit `checkpoint-dir`, else the default one beside the output (`-o OUT`:
    // `OUT.qopt-resume/autoround`), which the CLI removes once the output is written.
    let explicit = !options.checkpointDir.isEmpty
    let directory = explicit ? options.checkpointDir : context.defaultCheckpointDirectory
    let checkpoint = try directory.map {
      try AutoRoundCheckpoint(
        directory: $0, model: modelFingerprint(), data: calib.fingerprint,
        options: options.fingerprint(threads: context.threads) + assignedFingerprint()
          + (context.blocks.map { "blocks=\($0);" } ?? ""),
        wayOut: explicit
          ? "remove the directory or use another checkpoint-dir"
          : "add -fresh to discard it and start over (or remove the directory)")
    }
    let total = model.blocks.count
    func kept(_ done: Int) {
      guard let directory else { return }
      context.checkpointSaved(
        BlockCheckpointProgress(
          pass: "autoround", directory: directory, done: done, total: total, isDefault: !explicit))
    }
    if let checkpoint, let resumed = try checkpoint.resume(samples: xFp.samples, newStore: newStore)
    {
      for i in 0..<resumed.next {
        for (name, q) in try checkpoint.loadBlock(
          i, scheme: { self.weightOptions($0).scheme(columns: $1) })
        {
          guard let param = paramByName[name] else {
            throw PassError(
              "checkpoint holds \(name), which this run does not quantize")
          }
          apply(name, param, q)
        }
      }
      for (name, value) in resumed.inputScales {
        guard setInputScale(name, value, in: model.blocks) else {
          throw PassError(
            "checkpoint holds an input scale for \(name), whose linear has no static input quantization in this module"
          )
        }
      }
      start = resumed.next
      xFp = resumed.xFp
      xQ = resumed.xQ
      reports = resumed.reports
      inputScales = resumed.inputScales
      progress("autoround: resuming at block \(start)/\(total) from \(checkpoint.directory)")
    } else if let directory {
      let removal = explicit ? "" : " (removed once the output is written)"
      progress("autoround: keeping finished blocks in \(directory)\(removal)")
    }
    kept(start)

    let runStart = monotonicSeconds()
    // `-blocks=A..B`: blocks before A stay float and only feed block A; none after B runs.
    let selection = context.blocks?.range ?? 0...(total - 1)
    // A unit of a plan reads block A's float inputs from the cache phase when they are there.
    var from = start
    if start == 0 && !options.quantedInput,
      let stored = try context.blockInputCache?.readFirst(
        like: xFp, batch: options.batchSize, data: calib.fingerprint, budget: budget,
        context: context)
    {
      (xFp, from) = (stored.inputs, stored.block)
    }
    // The ETA counts the blocks this run tunes: through the selection's last one, not the model's.
    let last = min(total - 1, selection.upperBound)
    for bi in from..<(last + 1) {
      let t0 = monotonicSeconds()
      let f = model.blocks[bi]
      // The tuned weights are streamed (decoded per use, never held in f32 by the executor).
      let exec = try BlockExecutor(
        function: f, module: module, streaming: Set(f.linearWeights(in: paramByName).map(\.0)))
      // 1. Reference output of the float block on float inputs (also the next float input),
      //    with float activations, as auto-round computes it.
      let y = newStore()
      try forwardAll(exec, xFp, into: y)
      if bi < selection.lowerBound {
        // A float block: its outputs are both the next float and the next tuning inputs.
        if let q = xQ {
          let next = newStore()
          try forwardAll(exec, q, into: next)
          xQ = next
        }
        xFp = y
        continue
      }
      // 2. Tune on the quantized inputs (the float ones for the first block), with every
      //    linear input quantized as the runtime will (static scales first calibrated on them).
      let xTune = xQ ?? xFp
      inputScales += try calibrateInputScales(exec, f, on: xTune)
      exec.quantizeInputs = true
      let targets = f.linearWeights(in: paramByName)
      let linears = try makeLinears(f, targets)
      exec.trainable = Set(linears.map(\.name))
      let iters = options.iters
      let blockPhase = Progress.shared.phase(
        "autoround: block \(bi + 1)/\(total), iteration", total: iters)
      let finished = bi - from
      onIteration = { it, loss in
        let spent = monotonicSeconds() - runStart - blockPhase.elapsed
        let perBlock =
          finished > 0
          ? spent / Double(finished) : blockPhase.elapsed / Double(max(it, 1)) * Double(iters)
        let left = perBlock * Double(last + 1 - bi) - blockPhase.elapsed
        blockPhase.step(it, "loss \(lossText(loss))", eta: max(0, left))
      }
      var report = try tune(exec, linears, x: xTune, y: y, block: bi)
      // 3. Write back the best codes and scales; the executor now runs the quantized block.
      for (l, (name, param)) in zip(linears, targets) {
        let q = l.finalize()
        apply(name, param, q)
        if let p = exec.weightPointer(name) {
          l.qdq(into: p)
        } else {
          exec.stream(name) { l.qdq(into: $0) }
        }
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
      let done = bi - from + 1
      let eta = (monotonicSeconds() - runStart) / Double(done) * Double(last - bi)
      progress(
        "autoround: block \(bi + 1)/\(total)  loss \(lossText(report.firstLoss)) -> best \(lossText(report.bestLoss)) (iter \(report.bestIteration))  "
          + "\(String(format1: report.seconds)) s  ETA \(String(format1: eta)) s")
      if let checkpoint {
        try checkpoint.save(
          block: bi, weights: linears.map { ($0.name, module.weights.quantized($0.name)!) },  // safe: just applied
          xFp: xFp, xQ: xQ, inputScales: inputScales, reports: reports)
        kept(bi + 1)
      }
    }
    progress(summaryTable(reports))
    // MoE experts no calibration token reached get no gradient: their rounding stays RTN.
    if !calib.linearStats.isEmpty {
      var idle: [String: [Int]] = [:]
      for (name, m) in module.moeExpertLinears()
      where paramByName[name] != nil && (calib.linearStats[name]?.tokens ?? 0) == 0 {
        if !(idle[m.function]?.contains(m.expert) ?? false) {
          idle[m.function, default: []].append(m.expert)
        }
      }
      for f in idle.keys.sorted() {
        let list = (idle[f] ?? []).sorted().map(String.init).joined(separator: ", ")
        context.remark(
          "@\(f): experts \(list) received no calibration tokens and are quantized with RTN (round to nearest, no tuning)"
        )
      }
    }
  }

  /// The options `name` is quantized with.
  private func weightOptions(_ name: String) -> AutoRoundOptions { perWeight[name] ?? options }

  private func makeLinear(_ name: String, _ param: Op) throws -> SignRoundLinear {
    guard let t = module.weights.dense(name), t.shape.count == 2 else {
      throw PassError(
        "weight \(Printer.symbol(name)) is not a dense 2-D float weight (already quantized?)",
        at: param.location)
    }
    // A bf16/f16 checkpoint's weights are read from its mapping a row at a time (exact).
    let rows =
      WeightRows(decoding: t)
      ?? WeightRows(floats: t.floats(), rows: t.shape[0], cols: t.shape[1])
    return SignRoundLinear(
      name: name, rows: rows, scheme: weightOptions(name).scheme(columns: t.shape[1]))
  }

  /// The tunable state of each target of block `f`. NVFP4 global scales are fixed here, before
  /// tuning: each weight's own, then the minimum over the linears that read the same value
  /// (q/k/v, gate/up), as auto-round's `update_fused_layer_global_scales`.
  private func makeLinears(_ f: Function, _ targets: [(String, Op)]) throws -> [any TunableLinear] {
    guard options.quantScheme == "nvfp4" else {
      return try targets.map { try makeLinear($0.0, $0.1) }
    }
    var weights: [String: TensorData] = [:]
    for (name, param) in targets {
      guard let t = module.weights.dense(name), t.shape.count == 2 else {
        throw PassError(
          "weight \(Printer.symbol(name)) is not a dense 2-D float weight (already quantized?)",
          at: param.location)
      }
      guard t.shape[1] % SignRoundNVFP4.group == 0 else {
        throw PassError(
          "weight \(Printer.symbol(name)) has \(t.shape[1]) columns; nvfp4 needs a multiple of 16",
          at: param.location)
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
      if let i = byInput.firstIndex(where: { $0.0 === op.operands[0] }) {
        byInput[i].1.append(n)
      } else {
        byInput.append((op.operands[0], [n]))
      }
    }
    for (_, names) in byInput where names.count > 1 {
      let shared = names.compactMap { gs[$0] }.min() ?? 1
      for n in names { gs[n] = shared }
    }
    return targets.map { name, _ in
      let t = weights[name]!  // safe: every target was checked above
      return SignRoundNVFP4(
        name: name, weights: floats[name]!, rows: t.shape[0], cols: t.shape[1],
        globalScale: gs[name]!)  // safe: as above
    }
  }

  private func apply(_ name: String, _ param: Op, _ q: QuantizedTensor) {
    var q = q
    // The float weights stay at hand (never saved) for `finetune`'s float teacher.
    q.source = q.source ?? module.weights.dense(name) ?? module.weights.quantized(name)?.source
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
  private func calibrateInputScales(
    _ exec: BlockExecutor, _ f: Function, on x: ActivationStore
  ) throws -> [(String, Float)] {
    let linears = f.body.filter {
      $0.kind == .linear && ($0.inputQuantization.map { $0.mode != .dynamic } ?? false)
    }
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
      guard let name = op.operands[1].definingOp?.paramName, let a = amax[name],
        let q = op.inputQuantization
      else { continue }
      let value =
        q.kind == .nvfp4
        ? NVFP4Quantizer.globalScale(amax: a)
        : InputQuantization.scale(min: -a, max: a, kind: q.kind)
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
  package func forwardAll(
    _ exec: BlockExecutor, _ x: ActivationStore, into out: ActivationStore?
  ) throws {
    try exec.forward(all: x, batch: options.batchSize, into: out)
  }

  /// The per-weight choices that differ from the pass's options, for the checkpoint.
  private func assignedFingerprint() -> String {
    let own = options.fingerprint(threads: 0)
    let differing = perWeight.filter { $0.value.fingerprint(threads: 0) != own }
    guard !differing.isEmpty else { return "" }
    return ";assigned="
      + differing.keys.sorted().map {
        let o = perWeight[$0]!  // safe: a key
        return "\($0):\(o.bits)/\(o.groupSize.map(String.init) ?? "auto")"
      }.joined(separator: ",")
  }

  /// Mixes `t`'s bytes into a hash as 8-byte words, then the bytes left over. A tensor decoded
  /// on use (a bf16 checkpoint's f32) is decoded a chunk of rows at a time, never kept whole:
  /// the same words as hashing its full f32 bytes, without holding the model in f32 (32 GB for
  /// an 8B); a mapped one has its pages dropped after.
  private func hashBytes(of t: TensorData, _ mix: (UInt64) -> Void) {
    func mixWords(_ raw: UnsafeRawBufferPointer) {
      let words = raw.count / 8
      for i in stride(from: 0, to: words, by: 1) {
        mix(raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
      }
      for i in (words * 8)..<raw.count { mix(UInt64(raw[i])) }
    }
    let cols = t.shape.last ?? 0
    guard t.decodesRows, cols > 0, t.count % cols == 0 else {
      t.withUnsafeBytes(mixWords)
      if t.isMemoryMapped { t.releasePages() }
      return
    }
    // An even number of floats per chunk (but the last), so chunks split no 8-byte word.
    var chunk = max(1, (1 << 20) / cols)
    if cols % 2 == 1 && chunk % 2 == 1 { chunk += 1 }
    var buffer = [Float](repeating: 0, count: chunk * cols)
    let rows = t.count / cols
    for r in stride(from: 0, to: rows, by: chunk) {
      let n = min(chunk, rows - r)
      buffer.withUnsafeMutableBufferPointer { b in
        // safe: chunk · cols floats, n ≤ chunk
        let p = b.baseAddress!
        _ = t.decodeRows(r..<(r + n), into: p)
        mixWords(UnsafeRawBufferPointer(start: p, count: n * cols * 4))
      }
    }
    t.releasePages()
  }

  /// A hash of the module's weights (names, shapes, bytes) and its linears' input quantization,
  /// to refuse resuming a checkpoint made from another model.
  package func modelFingerprint() -> String {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    func mix(_ x: UInt64) { h = (h ^ x) &* 0x0000_0100_0000_01b3 }
    for name in module.weights.names {
      for b in name.utf8 { mix(UInt64(b)) }
      guard let e = module.weights[name] else { continue }
      for d in e.shape { mix(UInt64(d)) }
      if case .dense(let t) = e { hashBytes(of: t, mix) }
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
