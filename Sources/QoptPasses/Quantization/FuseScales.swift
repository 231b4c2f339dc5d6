import QoptIR

/// `fuse-scales`: gives every set of NVFP4 linears that read the same value (q/k/v, gate/up in
/// Llama — found from the dataflow, not from names) one global scale, the minimum of the
/// members', and re-derives each member's group scales and codes under it.
///
///     %wq = param @q {global_scale = 2688.0} : tensor<2x16x!q.nvfp4<group=16>>
///     %wk = param @k {global_scale = 1344.0} : tensor<2x16x!q.nvfp4<group=16>>
///   ->
///     %wq = param @q {fused_set = "block.0:0", global_scale = 1344.0} : …
///     %wk = param @k {fused_set = "block.0:0", global_scale = 1344.0} : …
let fuseScalesPass = Pass(
  "fuse-scales", summary: "share one NVFP4 global scale across linears that read the same input",
  details: fuseScalesDetails, options: NoOptions.self, preserves: ["linear-groups"]
) { module, _, context in
  let groups = try context.analysis(LinearGroupsAnalysis.self)
  if groups.isEmpty { context.debug("no linears share an input; nothing to fuse") }
  var sawNVFP4 = false
  var perFunction: [ObjectIdentifier: Int] = [:]
  for g in groups {
    let index = perFunction[ObjectIdentifier(g.function), default: 0]
    perFunction[ObjectIdentifier(g.function)] = index + 1
    let params = g.linears.compactMap { $0.operands[1].definingOp }.filter { $0.paramName != nil }
    let members = params.compactMap { p -> (Op, String, QuantizedTensor)? in
      guard let n = p.paramName, let q = module.weights.quantized(n), case .nvfp4 = q.scheme else { return nil }
      return (p, n, q)
    }
    guard !members.isEmpty else { continue }
    sawNVFP4 = true
    let setName = "\(g.function.name):\(index)"
    guard members.count == params.count else {
      context.warning("set \(setName) {\(g.weightNames.joined(separator: ", "))} mixes NVFP4 with other schemes; left as it is", at: g.linears[0].location)
      continue
    }
    let scales = members.map { $0.2.globalScale?.floats().first ?? 1 }
    let shared = scales.min() ?? 1
    for (param, name, q) in members {
      context.setAttribute("fused_set", .string(setName), on: param)
      context.setAttribute("global_scale", .float(Double(shared)), on: param)
      guard q.globalScale?.floats().first != shared else { continue }
      // Re-derive from the float weights when rtn kept them, else from the dequantized ones.
      let floats = q.source?.floats() ?? q.dequantized()
      var fused = floats.withUnsafeBufferPointer {
        NVFP4Quantizer.quantize($0, rows: q.shape[0], cols: q.shape[1], globalScale: shared, threads: context.threads)
      }
      fused.source = q.source
      context.setWeight(name, .quantized(fused))
    }
    context.debug("set \(setName) {\(g.weightNames.joined(separator: ", "))}: global scale \(shared)")
  }
  if !sawNVFP4 { context.debug("no NVFP4 weights; nothing to fuse, module unchanged") }
}

let fuseScalesDetails = """
  Sets come from `Module.linearInputGroups()`: linear ops whose input operand is the same SSA
  value. Renaming tensors does not change them, and a model with a fused qkv projection simply
  has no set (the pass then changes nothing; `-debug-pass-manager` says so). The shared global
  scale is the minimum of the members' (= the one computed from the largest amax), as
  llmcompressor and AutoRound fuse them. Each member's group scales and codes are then
  re-derived with it exactly as `rtn<scheme=nvfp4>` computes them, from the float weights `rtn`
  kept in memory (or, for a module loaded from disk, from the dequantized weights — then the
  result can differ from a from-scratch quantization, see docs/formats.md). Members get
  `fused_set` and `global_scale` attributes, so the dump shows each set's scale. Sets mixing
  NVFP4 with other schemes are left alone with a warning; the compressed-tensors backend
  refuses to emit them. Modules without NVFP4 weights are unchanged.

  After `autoround<scheme=nvfp4>`, which (as auto-round) fixes each fused set's global scale
  before tuning, this pass finds the members' scales already equal: it records `fused_set`
  and `global_scale` and keeps the tuned codes and group scales untouched. (Were they
  different — e.g. a set only partly tuned — the members would be re-derived from their
  dequantized weights, which keeps the tuned values' rounding only approximately.)
  """
