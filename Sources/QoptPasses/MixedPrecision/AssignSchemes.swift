import QoptIR

/// `assign-schemes`: mixed precision to a size budget — every weight gets the candidate
/// scheme that minimises the total damage with the emitted bytes within the budget, chosen
/// exactly (`SchemeKnapsack`), and recorded on its `param`:
///
///     %w = param @"model.layers.0.mlp.down_proj.weight" : tensor<576x1536xf32>
///   ->
///     %w = param @"model.layers.0.mlp.down_proj.weight" {qopt.scheme = "q6_k"} : tensor<576x1536xf32>
///
/// The weights stay float: a quantizing pass or the backend acts on the annotation.
let assignSchemesPass = Pass(
  "assign-schemes", summary: "choose each weight's scheme to minimise damage within a size budget",
  details: assignSchemesDetails, options: AssignSchemesOptions.self,
  // Only attributes change: the float model and its calibration are as they were, so a
  // `gptq` or `autoround` after it uses the same `calibrate` run.
  preserves: [CalibrationAnalysis.name, "linear-groups"]
) { module, options, context in
  guard (options.bpw != nil) != (options.size > 0) else {
    throw context.error("give exactly one of bpw=B and size=BYTES")
  }
  let schemes = try SchemeCandidates.spellings(options.candidates)
  let weights = try SchemeWeights.select(module, options, context: context)
  let pins = try SchemePins(options.overrides)
  var groups: [[SchemeCandidate]] = []
  var names: [String] = []
  let gguf = schemes.contains { if case .ggml = $0 { true } else { false } }
  for (param, name) in weights {
    guard let w = module.weights.dense(name), w.shape.count == 2 else {
      throw context.error(
        "weight \(Printer.symbol(name)) is not a 2-D float weight (assign-schemes runs before quantization)",
        at: param)
    }
    let (rows, cols) = (w.shape[0], w.shape[1])
    var pinned = try pins.scheme(for: name)
    if pinned == nil, case .success(let s?) = AssignedScheme.of(param) { pinned = s }
    var list: [AssignedScheme] = []
    for s in pinned.map({ [$0] }) ?? schemes {
      guard let e = SchemeCandidates.effective(s, columns: cols), !list.contains(e) else {
        if pinned != nil {
          throw context.error("\(s.spelling) cannot hold rows of \(cols) weights", at: param)
        }
        continue
      }
      list.append(e)
    }
    guard !list.isEmpty else {
      throw context.error(
        "no candidate holds rows of \(cols) weights (\(schemes.map(\.spelling).joined(separator: ", ")))",
        at: param)
    }
    let importance = module.importance[name].flatMap { $0.isResolved ? $0.columnWeights() : nil }
      .flatMap { $0.count == cols ? $0 : nil }
    let floats = w.floats()
    groups.append(
      list.map { s in
        let q = SchemeCandidates.roundTrip(
          floats, rows: rows, columns: cols, as: s, importance: gguf ? importance : nil,
          threads: context.threads)
        return SchemeCandidate(
          scheme: s, bytes: SchemeCandidates.bytes(s, rows: rows, columns: cols),
          error: SchemeCandidates.weightedError(floats, q, columns: cols, importance: importance))
      })
    names.append(name)
    w.releasePages()
  }
  if options.score == .kl {
    let scale = try SchemeSensitivity.measure(
      module, names: names, groups: groups, options: options, context: context)
    for i in groups.indices {
      let ref = groups[i].min { $0.bytes < $1.bytes }!.error
      for k in groups[i].indices {
        groups[i][k].error = ref > 0 ? scale[i] * groups[i][k].error / ref : 0
      }
    }
  }
  let elements = weights.reduce(0) { $0 + (module.weights[$1.1]?.shape.reduce(1, *) ?? 0) }
  let fixed = options.size > 0 ? SchemeWeights.otherBytes(module, excluding: Set(names)) : 0
  let budget =
    options.size > 0
    ? options.size - fixed : Int((options.bpw! * Double(elements) / 8).rounded(.down))
  let solution: SchemeKnapsack.Solution
  do {
    solution = try SchemeKnapsack.solve(
      groups.map { $0.map { SchemeKnapsack.Item(size: $0.bytes, damage: $0.error) } },
      budget: budget)
  } catch let failure as SchemeKnapsack.Failure {
    throw context.error(
      failure.message + (fixed > 0 ? " (after \(fixed) bytes of other weights)" : ""))
  }
  var counts: [String: (Int, Int)] = [:]
  for (i, (param, name)) in weights.enumerated() {
    let c = groups[i][solution.choice[i]]
    context.setAttribute(AssignedScheme.attribute, .string(c.scheme.spelling), on: param)
    counts[c.scheme.spelling, default: (0, 0)].0 += 1
    counts[c.scheme.spelling, default: (0, 0)].1 += c.bytes
    context.debug(
      "\(name): \(c.scheme.spelling), \(c.bytes) bytes, damage \(groups[i][solution.choice[i]].error)"
    )
  }
  let bpw = Double(solution.size) * 8 / Double(max(elements, 1))
  context.setModuleAttribute("assign_schemes.bpw", .float(bpw))
  context.setModuleAttribute("assign_schemes.bytes", .int(solution.size + fixed))
  let mix = counts.sorted { $0.key < $1.key }.map { "\($0.value.0) \($0.key)" }
  context.remark(
    "\(weights.count) weights: \(mix.joined(separator: ", ")); \((bpw * 10000).rounded() / 10000) bpw, \(solution.size + fixed) of \(budget + fixed) bytes, damage \(solution.damage)"
  )
}
