import QoptIR
import QoptRuntime

/// `awq`: activation-aware weight scaling (Lin et al. 2023) block by block. For every fold site
/// (`FoldSite`: q/k/v after the attention norm, gate/up after the MLP norm, o after v when the
/// shapes allow, down after up) a per-input-channel scale is searched on the block's cached
/// inputs and folded into the producer; then each weight group's clipping range is searched.
/// Only the float weights change; a quantizing pass follows (`awq<…>,rtn<…>` or `,gptq<…>`).
///
///     %x = rms_norm %h, %γ ; %q = linear %x, %Wq
///   ->
///     %x = rms_norm %h, %γ' ; %q = linear %x, %Wq'   {awq_alpha = 0.45}
let awqPass = Pass(
  "awq", summary: "AWQ: activation-aware per-channel scales and clipping (float weights only)",
  details: awqDetails, options: AWQOptions.self, preserves: [CalibrationAnalysis.name],
  plan: { module, options, plan in
    let selected = try WeightTargets(
      targets: options.weights.targets, ignore: options.weights.ignore
    ).select(in: module)
    try plan.requireFloat(selected.map(\.1), each: true)
  }
) { module, options, context in
  try AWQRun(module: module, options: options, context: context).run()
}

/// One run of `awq` over a module.
final class AWQRun {
  let module: Module
  let options: AWQOptions
  let context: PassContext

  init(module: Module, options: AWQOptions, context: PassContext) {
    self.module = module
    self.options = options
    self.context = context
  }

  func run() throws {
    BLAS.useThreads(context.threads)
    let w = options.weights
    let model = try ModelBlocks(module: module)
    let selected = Set(
      try WeightTargets(targets: w.targets, ignore: w.ignore).select(in: module, context: context)
        .map(\.1))
    var calib = try context.analysis(CalibrationAnalysis.self)
    let all = calib.blockInputs
    let k = min(options.searchSamples, all.samples)
    var x = ActivationStore.from(
      try Array(all.all().prefix(k * all.sampleFloats)), tokens: all.tokens, width: all.width)
    let total = model.blocks.count
    let phase = Progress.shared.phase("awq: block", total: total)
    defer { phase.close() }
    let runStart = monotonicSeconds()
    for (bi, f) in model.blocks.enumerated() {
      phase.step(bi, "searching")
      let t0 = monotonicSeconds()
      let exec = try BlockExecutor(function: f, module: module)
      // Each selected linear's input rows, one copy per input value; the float block's outputs
      // (which folding does not change) are the next block's inputs.
      var owner: [String: String] = [:]
      var byInput: [ObjectIdentifier: String] = [:]
      for op in f.body where op.kind == .linear {
        guard let n = op.operands[1].definingOp?.paramName, selected.contains(n), owner[n] == nil
        else { continue }
        let id = ObjectIdentifier(op.operands[0])
        owner[n] = byInput[id] ?? n
        byInput[id] = owner[n]
      }
      var inputs: [String: AWQInputs] = [:]
      exec.linearInputHook = { name, p, rows, cols in
        guard owner[name] == name else { return }
        var e = inputs[name] ?? AWQInputs(x: [], rows: 0, cols: cols)
        e.x += UnsafeBufferPointer(start: p, count: rows * cols)
        e = AWQInputs(x: e.x, rows: e.rows + rows, cols: cols)
        inputs[name] = e
      }
      let next = ActivationStore(tokens: x.tokens, width: x.width, budgetBytes: Int.max)
      try exec.forward(all: x, batch: options.batchSize, into: next)
      exec.linearInputHook = nil

      var scaled = 0
      for site in FoldSite.all(
        in: f, module: module, kinds: [.norm, .mulLinear, .attentionValue, .linear])
      {
        let names = site.weightNames
        guard names.allSatisfy(selected.contains), let key = owner[names[0]], var xs = inputs[key]
        else { continue }
        let weights = names.compactMap { n in
          module.weights.dense(n).map { (w: $0.floats(), rows: $0.shape[0]) }
        }
        let (s, alpha) = try AWQSearch.bestScale(xs, weights: weights, options: options)
        for l in site.linears { context.setAttribute("awq_alpha", .float(alpha), on: l) }
        guard alpha >= 0 else { continue }
        site.fold(s, module: module, context: context)
        calib = calib.scalingInputs(of: names, by: s)
        for i in 0..<xs.x.count { xs.x[i] /= s[i % xs.cols] }
        inputs[key] = xs
        scaled += 1
      }
      var clipped = 0
      if options.clip {
        for op in f.body where op.kind == .linear {
          guard let p = op.operands[1].definingOp, let n = p.paramName, let key = owner[n],
            let xs = inputs[key],
            !feedsAttentionScores(op, in: f), let t = module.weights.dense(n)
          else { continue }
          let c = try AWQSearch.clipped(
            t.floats(), rows: t.shape[0], tokenSubset(xs), options: options)
          context.setWeight(n, .dense(TensorData(floats: c, shape: t.shape)))
          if let r = p.result, r.type.element != .plain(.f32) {
            context.retype(r, to: r.type.with(element: .plain(.f32)))
          }
          clipped += 1
        }
      }
      x = next
      let seconds = monotonicSeconds() - t0
      let eta = (monotonicSeconds() - runStart) / Double(bi + 1) * Double(total - bi - 1)
      progress(
        "awq: block \(bi + 1)/\(total)  \(scaled) scale(s) folded, \(clipped) weight(s) clipped  \(String(format1: seconds)) s  ETA \(String(format1: eta)) s"
      )
    }
    context.analyses.set(CalibrationAnalysis.self, calib)
  }

  /// Whether `op`'s output reaches an attention's query or key (through rope): AutoAWQ does not
  /// clip q and k, whose errors the softmax amplifies.
  private func feedsAttentionScores(_ op: Op, in f: Function) -> Bool {
    guard let y = op.result else { return false }
    for user in f.body where user.operands.contains(where: { $0 === y }) {
      if user.kind == .attention, user.operands.prefix(2).contains(where: { $0 === y }) {
        return true
      }
      if user.kind == .rope, let r = user.result,
        f.body.contains(where: {
          $0.kind == .attention && $0.operands.prefix(2).contains { $0 === r }
        })
      {
        return true
      }
    }
    return false
  }

  /// At most 512 of the cached token rows, evenly spaced (AutoAWQ's `n_sample_token`).
  private func tokenSubset(_ x: AWQInputs) -> AWQInputs {
    let keep = min(512, x.rows)
    guard keep < x.rows else { return x }
    var out = [Float](repeating: 0, count: keep * x.cols)
    for t in 0..<keep {
      let src = t * x.rows / keep
      for j in 0..<x.cols { out[t * x.cols + j] = x.x[src * x.cols + j] }
    }
    return AWQInputs(x: out, rows: keep, cols: x.cols)
  }
}

let awqDetails = """
  AWQ as llm-compressor's `AWQModifier` (scale search) and AutoAWQ (`auto_clip`) run it, for
  the scheme given by the weight options (`rtn`'s; the same as the quantizing pass that must
  follow: `calibrate,awq<bits=4;group-size=64>,rtn<bits=4;group-size=64>` or `…,gptq<…>`).
  For each block called by `@main`, in order, on the first `search-samples` calibration
  windows (the float model's block inputs; folding leaves the float outputs unchanged, so the
  float block's outputs are the next block's inputs):

  1. fold sites are found from dataflow (`rms_norm` → the linears reading it; `up` → `down`
     through the `mul`; `v` → `o` through the attention when v is as wide as o's input, i.e.
     no grouped KV heads; a linear → a linear), never from names;
  2. per site: x̄_j = mean |x_j| over the cached tokens, w̄_j = the mean over the site's rows
     of |w_j| / (its group's max |w|); for α = k/grid, `s = max(x̄^α / (w̄^(1−α) + 1e-4), 1e-4)`
     (`no-duo-scaling`: `x̄^α`) divided by `√(max s · min s)`; each linear becomes `Q(W·s)/s`
     (Q: the weight options' rounding) and the α whose linears' outputs `X·Wᵀ` are closest (squared error)
     wins; no scaling is the first candidate. The producer is divided by s and the linears'
     columns multiplied by it (f32); the linears get `awq_alpha` (−1: no scaling won);
  3. with `clip`, every selected linear except those feeding the attention's query or key
     (AutoAWQ skips q/k) gets, per row and group, the bound `max|w_g|·(1 − i/grid)`, i < grid/2,
     whose quantized group gives the smallest squared error of `Σ_{j∈g} x_j w_j` over up to 512
     evenly spaced cached tokens, and its weights are clamped to it.

  The loss of step 2 is the site's own linear outputs, not the whole attention or MLP module
  llm-compressor inspects for q/k/v and gate/up (a cheaper proxy on CPU). The calibration
  statistics later passes read are rescaled to the scaled inputs. Memory: the cached inputs of
  one block's linears for `search-samples` windows.
  """
