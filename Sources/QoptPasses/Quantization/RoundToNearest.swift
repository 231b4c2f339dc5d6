import QoptIR
import QoptSupport
import Synchronization

/// `rtn`: round-to-nearest integer weight quantization, one scale per group of weights.
///
///     %w = param @"blk.0.ffn_up.weight" : tensor<128x64xf32>
///   ->
///     %w = param @"blk.0.ffn_up.weight" : tensor<128x64x!q.int<4, sym, group=32, scale=f16>>
///
/// The weight store entry becomes codes + scales (+ zero points); every user of the param now
/// reads the quantized tensor, which the runtime dequantizes and backends pack as they are.
/// A `param` carrying `{qopt.bits = N}` is quantized at N bits instead of `bits`.
let roundToNearestPass = Pass(
  "rtn", summary: "round-to-nearest integer weight quantization", details: rtnDetails,
  options: RTNOptions.self,
  plan: { module, options, plan in
    try options.checkWeighted()
    try options.plan(module, &plan)
  }
) {
  module, options, context in
  let rule = options.scaleRule
  try options.checkWeighted()
  let selected = try WeightTargets(targets: options.targets, ignore: options.ignore).select(
    in: module, context: context)
  // A pass over weights that are all quantized already would change nothing: refuse it.
  try WeightPlan(module).requireFloat(selected.map(\.1), pass: context.pass)
  var autoChosen: [(columns: Int, granularity: Granularity)] = []
  defer {
    if !autoChosen.isEmpty { context.remark(GroupSizeChoice.summary(autoChosen)) }
  }
  // Plain integer weights are quantized a batch at a time, whole weights per worker (RTNJob).
  var batch: [RTNJob] = []
  var batchResults: [Value] = []
  /// Quantizes the waiting weights and stores them. Run whenever the batch holds
  /// `RTNJob.batchValues`: what a store with a spill budget takes to disk stays bounded.
  func flush() {
    for ((job, result), q) in zip(zip(batch, batchResults), RTNJob.run(batch, threads: context.threads)) {
      var q = q
      q.source = job.weight  // kept for finetune's float teacher and starting weights (never saved)
      context.setWeight(job.name, .quantized(q))
      context.retype(result, to: result.type.with(element: .quantized(.int(job.scheme))))
    }
    batch.removeAll()
    batchResults.removeAll()
  }
  for (param, name) in selected {
    // An `assign-schemes` choice replaces the pass's own scheme for this weight.
    guard let options = try options.assigned(to: param, name: name) else { continue }
    guard let weight = module.weights.dense(name), let result = param.result else {
      if module.weights.quantized(name) != nil { continue }  // quantized earlier: leave it
      throw context.error(
        "weight \(Printer.symbol(name)) has no data in the weight store", at: param)
    }
    let (rows, cols) = (weight.shape[0], weight.shape[1])
    if let kind = options.scheme.ggml {
      guard
        let k = GGMLRounding.kind(kind, columns: cols, name: name, param: param, context: context)
      else { continue }
      let importance = try GGMLRounding.importance(module, name: name, columns: cols, param: param)
      let q = weight.withF32 {
        GGMLQuantizer.quantize(
          $0, rows: rows, cols: cols, as: k, importance: importance, threads: context.threads)
      }
      context.setWeight(name, .quantized(q))
      context.retype(result, to: result.type.with(element: .quantized(q.scheme)))
      continue
    }
    let scheme = try options.scheme(columns: cols)
    if options.groupSize == nil && options.scheme != .nvfp4 {
      autoChosen.append((cols, scheme.granularity))
    }
    if options.scheme == .fp8 {
      let q = weight.withF32 {
        FP8Quantizer.quantize($0, rows: rows, cols: cols, granularity: scheme.granularity)
      }
      context.setWeight(name, .quantized(q))
      context.retype(result, to: result.type.with(element: .quantized(q.scheme)))
      continue
    }
    if options.scheme == .nvfp4 {
      guard cols % NVFP4Quantizer.groupSize == 0 else {
        throw context.error(
          "weight \(Printer.symbol(name)) has \(cols) columns; nvfp4 needs a multiple of 16",
          at: param)
      }
      var q = weight.withF32 {
        NVFP4Quantizer.quantize($0, rows: rows, cols: cols, threads: context.threads)
      }
      q.source = weight  // kept for fuse-scales, which re-derives codes under a shared global scale
      context.setWeight(name, .quantized(q))
      context.retype(result, to: result.type.with(element: .quantized(q.scheme)))
      context.setAttribute(
        "global_scale", .float(Double(q.globalScale?.floats().first ?? 1)), on: param)
      continue
    }
    let s = try options.intScheme(scheme, param: param, name: name, dtype: weight.dtype)
    let quantizer = IntQuantizer(scheme: s, rule: rule)
    var q: QuantizedTensor
    if options.weighted {
      guard let stats = try context.analysis(CalibrationAnalysis.self).linearStats[name] else {
        throw context.error(
          "weighted: no calibration statistics for \(Printer.symbol(name)) (calibrate<no-stats>?)",
          at: param)
      }
      q = weight.withF32 {
        quantizer.quantizeWeighted(
          $0, rows: rows, cols: cols, importance: stats.meanSquare, threads: context.threads)
      }
    } else {
      batch.append(RTNJob(name: name, scheme: s, quantizer: quantizer, weight: weight))
      batchResults.append(result)
      if batch.reduce(0, { $0 + $1.weight.count }) >= RTNJob.batchValues { flush() }
      continue
    }
    q.source = weight  // kept for finetune's float teacher and starting weights (never saved)
    context.setWeight(name, .quantized(q))
    context.retype(result, to: result.type.with(element: .quantized(.int(s))))
  }
  flush()
}

/// One plain integer weight of an `rtn` run, planned and waiting to be quantized.
///
/// Weights are rounded a batch at a time by `ItemThreads`: small ones whole per thread, large
/// ones split across the threads (before, every weight's rows were split, and `rtn` over the
/// shared model ran at 1.5× on two threads, most of the rest joins). A weight's codes do not
/// depend on which thread rounds it (rows are independent), so the result is the same bytes.
/// Weights wait in batches of about `batchValues` values, then are stored in their order.
package struct RTNJob: Sendable {
  /// Weight values quantized between two stores: about one large weight of an 8B model, so the
  /// codes held before the store (and its spill, out of core) takes them stay that size.
  static let batchValues = 1 << 25

  package let name: String
  let scheme: IntScheme
  let quantizer: IntQuantizer
  let weight: TensorData

  package init(name: String, scheme: IntScheme, quantizer: IntQuantizer, weight: TensorData) {
    self.name = name
    self.scheme = scheme
    self.quantizer = quantizer
    self.weight = weight
  }

  /// Weights of at least this many values are rounded one at a time with every thread;
  /// smaller ones go to the threads whole.
  package static let wholeWeightValues = 1 << 22

  /// The quantized tensors of `jobs`, in order, made on up to `threads` threads.
  package static func run(_ jobs: [RTNJob], threads: Int) -> [QuantizedTensor] {
    let done = Mutex<[Int: QuantizedTensor]>([:])
    ItemThreads.run(
      count: jobs.count, threads: threads, isLarge: { jobs[$0].weight.count >= wholeWeightValues }
    ) { i, t in
      let q = jobs[i].quantize(threads: t)
      // As `setWeight` would right after it: the source's decoded or mapped pages go now, not
      // when the batch is done.
      jobs[i].weight.releasePages()
      done.withLock { $0[i] = q }
    }
    return done.withLock { d in jobs.indices.map { d[$0]! } }  // safe: every index was filled
  }

  package func quantize(threads: Int) -> QuantizedTensor {
    let (rows, cols) = (weight.shape[0], weight.shape[1])
    if weight.decodesRows, scheme.granularity != .tensor {
      // Decoded on first use (a GGUF import): quantize row by row from the source blocks.
      let weight = self.weight
      return quantizer.quantize(rows: rows, cols: cols, threads: threads) { block, scratch in
        _ = weight.decodeRows(block, into: scratch)
        return UnsafePointer(scratch)
      }
    }
    return weight.withF32 { quantizer.quantize($0, rows: rows, cols: cols, threads: threads) }
  }
}

/// What `rtn` writes: integer codes, NVFP4, FP8, or ggml blocks (`GGMLBlockKind`'s names).
package enum RTNScheme: String, Sendable, CaseIterable {
  case int, nvfp4, fp8
  case q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs

  /// The ggml block codec this names, or nil for `int`, `nvfp4`, `fp8`.
  /// The ggml block kind of a `q…`/`iq…` scheme. The others answer without the name lookup,
  /// which goes through reflection (`"\(kind)"`) and cost 13 ms over a 135M model's weights.
  package var ggml: GGMLBlockKind? {
    switch self {
    case .int, .nvfp4, .fp8: nil
    default: GGMLBlockKind(name: rawValue)
    }
  }
}

/// The scale precision of `rtn`: `auto` (by the scale rule) or a float dtype.
enum ScaleDTypeChoice: String, Sendable, CaseIterable {
  case auto, f32, f16, bf16
  var dtype: DType? { DType(rawValue: rawValue) }
}

/// Options of `rtn`.
package struct RTNOptions: PassOptions {
  package var bits = 4
  package var sym = true
  /// nil: `auto` (`GroupSizeChoice`).
  package var groupSize: Int? = nil
  package var scheme = RTNScheme.int
  var scaleRule = ScaleRule.fullRange
  var scaleDType = ScaleDTypeChoice.auto
  var targets = ["Linear"]
  package var ignore: [String] = []
  var weighted = false

  package init() {}
  package static let schema: [OptionField<RTNOptions>] =
    weightSchema + [
      .bool(
        "weighted", \.weighted,
        "importance-weighted scale search per group (auto-round's optimized RTN) with calibrate's per-channel mean x²; int sym full-range; needs calibrate"
      )
    ]

  /// The weight options every quantizing pass spells the same way (`gptq` takes them as they are).
  package static let weightSchema: [OptionField<RTNOptions>] = [
    .choice(
      "scheme", \.scheme,
      "int: integer codes (bits, sym, group-size apply); nvfp4: FP4 E2M1, groups of 16, E4M3 scales, f32 global scale; fp8: E4M3 codes, f32 scale amax/448 per group-size (-1 channel, 0 tensor); q4_0 … iq4_xs: ggml's blocks, encoded by ggml's encoder (importance-weighted when the module has an importance matrix)"
    ),
    .int("bits", \.bits, "bits per weight", in: 2...8),
    .bool("sym", \.sym, "symmetric (no zero point); no-sym stores a zero point per group"),
    .groupSize(
      "group-size", \.groupSize,
      "weights sharing one scale along a row; -1 per channel, 0 per tensor; auto: 128 where it divides the row, else 64 or 32, else per channel (fp8: per channel)",
      in: -1...65536),
    .choice(
      "scale-rule", \.scaleRule,
      "full-range: auto-round/llama.cpp rule; minmax: compressed-tensors rule"),
    .choice(
      "scale-dtype", \.scaleDType,
      "scale precision; auto: f16 for full-range, the weight dtype for minmax"),
    .list("targets", \.targets, "Linear, names or re: regexes of the weights to quantize"),
    .list("ignore", \.ignore, "names or re: regexes of weights to leave alone (each must match)"),
  ]

  /// The integer scheme (or, for fp8, the granularity) for a row of `columns` weights.
  func scheme(columns: Int) throws -> IntScheme {
    if let g = groupSize, g < -1 { throw PassError("group-size must be -1, 0 or positive") }
    let g = GroupSizeChoice.granularity(
      explicit: groupSize, columns: columns, scheme: scheme.rawValue)
    return IntScheme(
      bits: bits, symmetric: sym, granularity: g, scaleType: scaleDType.dtype ?? .f16)
  }

  /// The integer scheme a weight gets: `scheme` with the param's own `{qopt.bits = N}` (a
  /// per-weight width chosen earlier in the pipeline, e.g. by a bit-width plugin pass) and the
  /// scale dtype `auto` resolves to (f16 for full-range, the weight's dtype for minmax).
  func intScheme(_ scheme: IntScheme, param: Op, name: String, dtype: DType) throws -> IntScheme {
    var s = scheme
    if let attr = param.attributes["qopt.bits"] {
      guard let bits = attr.intValue, (2...8).contains(bits) else {
        throw PassError(
          "'qopt.bits' of \(Printer.symbol(name)) must be an integer in 2...8, found \(Printer.attribute(attr))",
          at: param.location)
      }
      s.bits = bits
    }
    if scaleDType == .auto {
      s.scaleType = scaleRule == .fullRange ? .f16 : (dtype == .f32 ? .f32 : dtype)
    }
    return s
  }

  /// `weighted` searches symmetric full-range integer scales per row or group only.
  func checkWeighted() throws {
    guard weighted else { return }
    guard scheme == .int, sym, scaleRule == .fullRange, groupSize != 0 else {
      throw PassError(
        "weighted applies to scheme=int with sym, scale-rule=full-range and a group size or -1 (auto-round's optimized RTN)"
      )
    }
  }

  /// Predicts, for the check before the pipeline, what a pass quantizing with these options
  /// does: refuses a pass whose selected weights are all quantized (`each`: any of them) and
  /// records the type each selected float weight will get.
  func plan(_ module: Module, _ plan: inout WeightPlan, each: Bool = false) throws {
    let selected = try WeightTargets(targets: targets, ignore: ignore).select(in: module)
    try plan.requireFloat(selected.map(\.1), each: each)
    for (param, name) in selected {
      guard let w = plan[name], w.scheme == nil, w.shape.count == 2 else { continue }
      if let kind = scheme.ggml {
        // A row no ggml block fits stays float (the pass says so).
        if let k = kind.fallback(rowLength: w.shape[1]) { plan.quantize(name, as: .ggml(k)) }
        continue
      }
      plan.quantize(
        name,
        as: try predicted(
          columns: w.shape[1], param: param, dtype: module.weights.dense(name)?.dtype))
    }
  }

  /// The type a weight of `columns` columns will get (for the check before the pipeline).
  func predicted(columns: Int, param: Op, dtype: DType?) throws -> QuantScheme {
    var s = try scheme(columns: columns)
    switch scheme {
    case .fp8: return .fp8(s.granularity)
    case .nvfp4: return .nvfp4(group: NVFP4Quantizer.groupSize)
    default:
      if let b = param.attributes["qopt.bits"]?.intValue { s.bits = b }
      let rule = scaleRule
      if scaleDType == .auto { s.scaleType = rule == .fullRange ? .f16 : (dtype ?? .f32) }
      return .int(s)
    }
  }
}

let rtnDetails = """
  Replaces each selected weight by integer codes, one scale per group of `group-size` weights
  along a row (`-1`: one per row, `0`: one per tensor; a group size that does not divide the
  row leaves a short last group, as auto-round does). The default `auto` takes 128 where it
  divides the row, else the largest of 64 and 32 that does, else one scale per row, so every
  backend loads the result; a remark says what it chose per row length. A pass whose selected
  weights are all quantized already is refused (it would change nothing). The weight's type then shows the scheme,
  e.g. `tensor<576x576x!q.int<4, sym, group=64, scale=f16>>`, and it dequantizes as
  `scale · (code − zero_point)`.

  Scale rules, each bit-identical to its reference:

  - `full-range` (auto-round `quant_tensor_rtn_sym`, llama.cpp): per group, the weight of
    largest magnitude maps to −2^(b−1); the scale is signed (`max_v / 2^(b−1)` with
    `max_v = −max` when the positive side is larger), rounded to the scale dtype (f16 by
    default, as auto-round stores it), magnitude at least 1e-5 (1e-8 with `scale-dtype=f32`);
    codes `clamp(round_half_even(w / scale), −2^(b−1), 2^(b−1) − 1)`. Asymmetric: auto-round
    `quant_tensor_asym` (`scale = (max − min) / (2^b − 1)`, `zp = round(−min / scale)`), codes
    stored shifted by −2^(b−1) so that every scheme dequantizes the same way.
  - `minmax` (compressed-tensors `calculate_qparams`, llmcompressor): symmetric
    `scale = amax / ((qmax − qmin) / 2)` (amax/7.5 for int4), asymmetric
    `scale = (max − min) / (qmax − qmin)`, `zp = clamp(qmin − min / scale)`, rounded; codes
    `round_half_even(clamp(w / scale + zp, qmin, qmax))`; scales in the weight's dtype unless
    `scale-dtype` says otherwise (a bf16 scale divides in bf16, as the reference does); a zero
    scale becomes the dtype's epsilon.

  `scheme=nvfp4` (compressed-tensors NVFP4, bit-exact): global scale `gs = (1/amax)·2688`
  (f32), group scales `e4m3(gs · amax_16 / 6)` (0 → 0.125), codes E2M1 of `w / (s_g/gs)`
  clamped to ±6, ties to even, negative zeros keep their sign. The param gets a
  `global_scale` attribute; run `fuse-scales` to give fused sets one global scale.

  `scheme=fp8` (compressed-tensors `float-quantized`): `scale = amax / 448` per tensor
  (`group-size=0`), row (`-1`, and `auto`) or group, codes `e4m3(clamp(w / scale, ±448))` rounded to
  nearest even; f32 scales.

  `weighted` (auto-round's optimized RTN, `iters=0`; needs `calibrate`): per group the
  full-range scale `−g/2^(b−1)` (g the group's element of largest magnitude) and 200
  candidates `−g/(2^(b−1) − step·k)`, k = −100…100 (step `1.5·2^(b−1)/200`; 2 bits: step
  0.01, k = −90…90), each rounded to the scale dtype, are tried; the one with the smallest
  `Σ_j mean(x_j²) · (s·q_j − w_j)²` wins (the first unless strictly beaten), with `mean(x_j²)`
  `calibrate`'s statistic of the linear's input channel j. Integer symmetric full-range only.
  It is an `rtn` option rather than a pass of its own because the grid, the options and
  what is written are `rtn`'s; only the choice of each group's scale differs.

  Assigned schemes: a selected `param` carrying `{qopt.scheme = S}` (from `assign-schemes`)
  is quantized as S instead of with these options: `intB-gG` (B bits, group G, symmetric),
  `intB` (per channel), `fp8` (per channel), `nvfp4`; `float` leaves it float; a ggml type
  name is an error (GGUF output encodes those itself).

  Per-weight widths: a selected `param` carrying `{qopt.bits = N}` (set by an earlier pass,
  e.g. the `bit-width-rule` sample plugin) is quantized at N bits (2…8) instead of `bits`
  (integer scheme).

  Targets: `Linear` selects every weight read by a `linear` op except the output head (a weight
  named `lm_head`/`output`, or one that is also an embedding table); other entries are exact
  module or weight names, or `re:` regexes matched from the start of the name, as
  compressed-tensors configs write them (Python `re` syntax without back-references or
  look-around, matched in linear time). An `ignore` entry that matches no weight, or a
  non-`Linear` target that matches no linear weight, is an error.
  """
