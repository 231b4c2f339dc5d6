import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// `smoothquant`: SmoothQuant (Xiao et al. 2023) as llm-compressor's `SmoothQuantModifier`
/// applies it: for each set of linears reading one rms_norm's output, per input channel
/// `s_j = max|x_j|^α / max_i|W_ij|^(1−α)` (max over the set's rows), folded so that the
/// norm's weight becomes `γ_j / s_j` and each linear's `W[:, j] · s_j`. The float model's
/// outputs are unchanged; the activations' outliers move into the weights, which int8
/// per-channel weights absorb (W8A8: `calibrate,smoothquant,rtn<bits=8;group-size=-1>,quantize-activations`).
///
///     %x = rms_norm %h, %γ ; %q = linear %x, %Wq
///   ->
///     %x = rms_norm %h, %γ' ; %q = linear %x, %Wq'   {smoothquant_alpha = 0.5}
let smoothQuantPass = Pass(
  "smoothquant", summary: "SmoothQuant: migrate activation outliers into the weights (W8A8)",
  details: smoothQuantDetails, options: SmoothQuantOptions.self,
  preserves: [CalibrationAnalysis.name]
) { module, options, context in
  var calib = try context.analysis(CalibrationAnalysis.self)
  let selected = Set(
    try WeightTargets(targets: options.targets, ignore: options.ignore).select(
      in: module, context: context
    ).map(\.1))
  let alpha = Float(options.alpha)
  var folded = 0
  for f in module.functions {
    for site in FoldSite.all(in: f, module: module, kinds: [.norm])
    where site.weightNames.allSatisfy(selected.contains) {
      guard let act = site.weightNames.lazy.compactMap({ calib.linearStats[$0]?.absMax }).first
      else { continue }
      var wmax = [Float](repeating: 0, count: act.count)
      for n in site.weightNames {
        guard let t = module.weights.dense(n), t.shape.count == 2, t.shape[1] == act.count else {
          continue
        }
        let w = t.floats()
        for i in 0..<w.count { wmax[i % act.count] = max(wmax[i % act.count], abs(w[i])) }
      }
      // A channel never active or with no weight keeps its scale (1), as the reference does
      // for zero weight columns; it would otherwise divide by zero.
      let s = zip(act, wmax).map { a, w in a > 0 && w > 0 ? pow(a, alpha) / pow(w, 1 - alpha) : 1 }
      site.fold(s, module: module, context: context)
      for l in site.linears {
        context.setAttribute("smoothquant_alpha", .float(options.alpha), on: l)
      }
      calib = calib.scalingInputs(of: site.weightNames, by: s)
      folded += 1
    }
  }
  context.analyses.set(CalibrationAnalysis.self, calib)
  context.remark("folded scales into \(folded) norm(s)")
}

/// Options of `smoothquant`.
struct SmoothQuantOptions: PassOptions {
  var alpha = 0.5
  var targets = ["Linear"]
  var ignore: [String] = []

  init() {}
  static let schema: [OptionField<SmoothQuantOptions>] = [
    .double(
      "alpha", \.alpha,
      "migration strength: 0 leaves the activations, 1 moves all of their range into the weights",
      in: 0...1),
    .list(
      "targets", \.targets, "Linear, names or re: regexes of the weights whose inputs are smoothed"),
    .list("ignore", \.ignore, "names or re: regexes of weights to leave alone"),
  ]
}

let smoothQuantDetails = """
  Needs `calibrate` (the per-channel max |x| of each linear's input on the float model). For
  every set of selected linears that read the output of an `rms_norm` and nothing else reads it
  (found from dataflow: q/k/v after the attention norm, gate/up after the MLP norm), per input
  channel j: `s_j = max|x_j|^alpha / max_i |W_ij|^(1−alpha)` with the maximum over every row of
  every linear in the set (llm-compressor `_calculate_smoothing_scales`; a channel whose
  activation or weight maximum is 0 keeps 1). The norm's weight becomes `γ_j / s_j` and each
  linear's weight `W[:, j] · s_j` (f32), so the float model computes the same function; the
  linears get a `smoothquant_alpha` attribute. The calibration statistics later passes read are
  rescaled to the smoothed inputs (per-channel exactly; per-tensor ranges as the bound
  `±max_j max|x_j|/s_j`). Quantize afterwards, e.g. `rtn<bits=8;group-size=-1>,quantize-activations`.
  """
