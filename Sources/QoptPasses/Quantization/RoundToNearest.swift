import QoptIR

/// `rtn`: round-to-nearest integer weight quantization, one scale per group of weights.
///
///     %w = param @"blk.0.ffn_up.weight" : tensor<128x64xf32>
///   ->
///     %w = param @"blk.0.ffn_up.weight" : tensor<128x64x!q.int<4, sym, group=32, scale=f16>>
///
/// The weight store entry becomes codes + scales (+ zero points); every user of the param now
/// reads the quantized tensor, which the runtime dequantizes and backends pack as they are.
/// A `param` carrying `{qopt.bits = N}` is quantized at N bits instead of `bits`.
let roundToNearestPass = Pass("rtn", summary: "round-to-nearest integer weight quantization", options: RTNOptions.self) {
  module, options, context in
  let scheme = try options.scheme(pass: "rtn")
  let rule = ScaleRule(rawValue: options.scaleRule) ?? .fullRange
  let selected = try WeightTargets(targets: options.targets, ignore: options.ignore).select(in: module, pass: "rtn")
  for (param, name) in selected {
    guard let weight = module.weights.dense(name), let result = param.result else {
      if module.weights.quantized(name) != nil { continue }  // already quantized: leave it
      throw PassError(pass: "rtn", "weight \(Printer.symbol(name)) has no data in the weight store", at: param.location)
    }
    let (rows, cols) = (weight.shape[0], weight.shape[1])
    var s = scheme
    // A per-weight width chosen earlier in the pipeline (e.g. by a bit-width plugin pass).
    if let attr = param.attributes["qopt.bits"] {
      guard let bits = attr.intValue, (2...8).contains(bits) else {
        throw PassError(pass: "rtn", "'qopt.bits' of \(Printer.symbol(name)) must be an integer in 2...8, found \(Printer.attribute(attr))", at: param.location)
      }
      s.bits = bits
    }
    if options.scaleDType == "auto" { s.scaleType = rule == .fullRange ? .f16 : (weight.dtype == .f32 ? .f32 : weight.dtype) }
    let floats = weight.floats()
    let q = floats.withUnsafeBufferPointer {
      IntQuantizer(scheme: s, rule: rule).quantize($0, rows: rows, cols: cols, threads: context.threads)
    }
    context.setWeight(name, .quantized(q))
    context.retype(result, to: result.type.with(element: .quantized(.int(s))))
  }
}

/// Options of `rtn`.
struct RTNOptions: PassOptions {
  var bits = 4
  var sym = true
  var groupSize = 128
  var scaleRule = ScaleRule.fullRange.rawValue
  var scaleDType = "auto"
  var targets = ["Linear"]
  var ignore: [String] = []

  static let schema: [OptionField<RTNOptions>] = [
    .int("bits", \.bits, "bits per weight", in: 2...8),
    .bool("sym", \.sym, "symmetric (no zero point); no-sym stores a zero point per group"),
    .int("group-size", \.groupSize, "weights sharing one scale along a row; -1 per channel, 0 per tensor", in: -1...65536),
    .choice("scale-rule", \.scaleRule, ScaleRule.allCases.map(\.rawValue), "full-range: auto-round/llama.cpp rule; minmax: compressed-tensors rule"),
    .choice("scale-dtype", \.scaleDType, ["auto", "f32", "f16", "bf16"], "scale precision; auto: f16 for full-range, the weight dtype for minmax"),
    .list("targets", \.targets, "Linear, names or re: regexes of the weights to quantize"),
    .list("ignore", \.ignore, "names or re: regexes of weights to leave alone (each must match)"),
  ]

  func scheme(pass: String) throws -> IntScheme {
    let g: Granularity = switch groupSize {
    case -1: .channel
    case 0: .tensor
    default: .group(groupSize)
    }
    if groupSize < -1 { throw PassError(pass: pass, "group-size must be -1, 0 or positive") }
    return IntScheme(bits: bits, symmetric: sym, granularity: g, scaleType: DType(rawValue: scaleDType) ?? .f16)
  }
}
