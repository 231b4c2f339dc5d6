import QoptIR

/// `quantize-activations`: gives each selected `linear` an 8-bit input quantization (W8A8 when
/// its weight is 8-bit too), which the runtime applies before the matmul and the
/// compressed-tensors backend writes as `input_activations`:
///
///     %q = linear %h, %w_q : (…)
///   -> quantize-activations<type=fp8;mode=dynamic;strategy=token>
///     %q = linear %h, %w_q {input_mode = "dynamic", input_quant = "fp8", input_strategy = "token"} : (…)
///
/// Static mode stores one calibrated scale per linear (`input_scale`), from the ranges
/// `calibrate` recorded; dynamic mode stores nothing and the scale is computed at run time.
let quantizeActivationsPass = Pass(
  "quantize-activations", summary: "8-bit input activation quantization of linears (int8 or fp8, static or dynamic)",
  details: quantizeActivationsDetails, options: QuantizeActivationsOptions.self, preserves: [CalibrationAnalysis.name]
) { module, options, context in
  let (kind, mode, strategy) = (options.type, options.mode, options.strategy)
  if mode == .static && strategy == .token && kind != .nvfp4 {
    throw context.error("strategy=token needs mode=dynamic (one scale per token cannot be calibrated; use strategy=tensor)")
  }
  let selected = Set(try WeightTargets(targets: options.targets, ignore: options.ignore).select(in: module, context: context).map(\.1))
  var calibration: CalibrationData?
  if mode == .static || kind == .nvfp4 {
    do { calibration = try context.analysis(CalibrationAnalysis.self) } catch {
      throw context.error(
        "\(kind == .nvfp4 ? "type=nvfp4 (a calibrated global scale)" : "mode=static") needs calibrated activation ranges: put 'calibrate' before this pass in -passes, with no pass that changes weights in between (e.g. -passes='calibrate,quantize-activations<mode=static;strategy=tensor>,rtn')")
    }
  }
  let idle = calibration.map { idleExpertRanges(module, $0) } ?? [:]
  if !idle.isEmpty {
    context.remark(
      "\(idle.count) MoE expert linears received no calibration tokens; their inputs take "
        + "the mean range of the same projection in the experts that did")
  }
  var count = 0
  for op in module.allOps where op.kind == .linear {
    guard let name = op.operands[1].definingOp?.paramName, selected.contains(name) else { continue }
    let stats = idle[name] ?? calibration?.linearStats[name]
    var q = InputQuantization(kind: kind, mode: mode, strategy: strategy)
    if kind == .nvfp4, calibration != nil {
      guard let s = stats, s.tokens > 0 else {
        throw context.error("no calibrated input range for the linear reading \(Printer.symbol(name)) (was 'calibrate' run with no-stats?)", at: op)
      }
      // gs = 448·6 / amax, amax = max(|min|, |max|) of the calibrated input (llmcompressor's
      // static_minmax); linears reading one value see the same range, hence the same gs.
      let amax = options.observer == .minmax ? Swift.max(abs(s.min), abs(s.max)) : s.movingAbsMax
      q = .nvfp4(globalScale: NVFP4Quantizer.globalScale(amax: amax))
    } else if calibration != nil {
      guard let s = stats, s.tokens > 0 else {
        throw context.error("no calibrated input range for the linear reading \(Printer.symbol(name)) (was 'calibrate' run with no-stats?)", at: op)
      }
      q.scale = options.observer == .minmax
        ? InputQuantization.scale(min: s.min, max: s.max, kind: kind)
        : InputQuantization.scale(min: -s.movingAbsMax, max: s.movingAbsMax, kind: kind)
    }
    for key in InputQuantization.keys { context.setAttribute(key, nil, on: op) }
    for (k, v) in q.attributes { context.setAttribute(k, v, on: op) }
    context.debug("\(Printer.symbol(name)): \(kind.rawValue) \(q.mode.rawValue) per \(q.strategy.rawValue)\(q.scale.map { ", scale \($0)" } ?? "")\(q.globalScale.map { ", global scale \($0)" } ?? "")")
    count += 1
  }
  let how = kind == .nvfp4 ? "local per group of 16" : "\(mode.rawValue) per \(strategy.rawValue)"
  context.remark("\(count) linear inputs → \(kind.rawValue) \(how)")
}

/// Options of `quantize-activations`.
struct QuantizeActivationsOptions: PassOptions {
  var type = InputQuantization.Kind.int8
  var mode = InputQuantization.Mode.dynamic
  var strategy = InputQuantization.Strategy.token
  var observer = Observer.minmax
  var targets = ["Linear"]
  var ignore: [String] = []

  /// Where a static range comes from.
  enum Observer: String, Sendable { case minmax, movingAverage = "moving-average" }

  init() {}
  static let schema: [OptionField<QuantizeActivationsOptions>] = [
    .choice("type", \.type, [.int8, .fp8, .nvfp4], "int8: symmetric codes in [-128, 127], scale amax/127.5; fp8: E4M3, scale amax/448; nvfp4 (W4A4): E2M1 codes, E4M3 scales per 16 computed at run time under a calibrated global scale 448·6/amax (needs calibrate; mode and strategy do not apply)"),
    .choice("mode", \.mode, [.dynamic, .static], "dynamic: scales computed at run time; static: one calibrated scale per linear (needs calibrate)"),
    .choice("strategy", \.strategy, [.token, .tensor], "one scale per token row or per input tensor (static needs tensor)"),
    .choice("observer", \.observer, [.minmax, .movingAverage], "static range: min/max over all calibration tokens, or the moving average over windows (calibrate's momentum)"),
    .list("targets", \.targets, "Linear, names or re: regexes of the weights whose linears get quantized inputs"),
    .list("ignore", \.ignore, "names or re: regexes of weights whose linears keep float inputs (each must match)"),
  ]
}

let quantizeActivationsDetails = """
  Sets `input_quant`, `input_mode`, `input_strategy` (and `input_scale` when static) on each
  selected `linear` (docs/ir.md, "Activation quantization"). The runtime then fake-quantizes
  the linear's input exactly as compressed-tensors does when transformers evaluates a W8A8
  checkpoint, so `qopt eval` measures the real model:

  - scale `s = amax / 448` (fp8) or `amax / 127.5` (int8), amax = max |x| per token row
    (`strategy=token`) or over the input (`tensor`); an exact 0 becomes f32 epsilon;
  - fp8: `x̂ = e4m3(clamp(x / s, ±448)) · s` (nearest, ties to even); int8:
    `x̂ = round_half_even(clamp(x / s, −128, 127)) · s`.

  `mode=dynamic` computes the scales at run time (compressed-tensors presets `FP8_DYNAMIC`,
  `W8A8`); `mode=static` (preset `FP8`) stores one scale per linear from the ranges `calibrate`
  recorded on the float model: `observer=minmax` takes min/max over all calibration tokens
  (llmcompressor's `static_minmax`), `observer=moving-average` the moving average of each
  window's max |x| (optimum-quanto, momentum from `calibrate`). Static scales need `calibrate`
  earlier in the pipeline with no weight-changing pass in between (e.g.
  `calibrate,quantize-activations<mode=static;strategy=tensor>,rtn<…>`); strategy `token`
  needs `mode=dynamic`, as in the reference.

  `type=nvfp4` (W4A4, compressed-tensors preset `NVFP4`) stores one calibrated global scale per
  linear, `input_global_scale = 448·6 / amax` (amax from `calibrate`, as llmcompressor's
  `static_minmax`), and quantizes each 16-value group of an input row at run time:
  `s = e4m3(gs · amax₁₆ / 6)`, `x̂ = E2M1(clamp(x · gs / s, ±6)) · s / gs` — the NVFP4 weight
  rule (`input_mode = "local"`, `input_strategy = "group"`).

  Targets as for `rtn`: `Linear` selects every linear except the output head.
  """

/// Input ranges for the MoE expert linears calibration never reached: the mean `min`, `max`
/// and moving abs-max of the same projection (same function, weight shape and place in the
/// expert: reading the dispatch or not) in the experts that received tokens. Experts are
/// found from dataflow (`moeExpertLinears`).
private func idleExpertRanges(
  _ module: Module, _ calibration: CalibrationData
) -> [String: CalibrationData.ChannelStats] {
  let experts = module.moeExpertLinears()
  var key: [String: String] = [:]
  for op in module.allOps where op.kind == .linear {
    guard let name = op.operands[1].definingOp?.paramName, let m = experts[name] else { continue }
    let direct = op.operands[0].definingOp?.kind == .moeDispatch
    key[name] = "\(m.function) \(op.operands[1].type.shape) \(direct)"
  }
  var groups: [String: [CalibrationData.ChannelStats]] = [:]
  for (name, k) in key {
    if let s = calibration.linearStats[name], s.tokens > 0 { groups[k, default: []].append(s) }
  }
  var out: [String: CalibrationData.ChannelStats] = [:]
  for (name, k) in key where (calibration.linearStats[name]?.tokens ?? 0) == 0 {
    guard let sib = groups[k], var s = sib.first else { continue }
    let n = Float(sib.count)
    s.min = sib.map(\.min).reduce(0, +) / n
    s.max = sib.map(\.max).reduce(0, +) / n
    s.movingAbsMax = sib.map(\.movingAbsMax).reduce(0, +) / n
    out[name] = s
  }
  return out
}
