/// Sets of `linear` ops that read the same SSA value — in Llama q/k/v (the normed attention
/// input) and gate/up (the normed MLP input) — found from the dataflow, never from names, so
/// renaming tensors or another architecture's naming changes nothing. Sets of one are left out.
public struct LinearInputGroup {
  public let function: Function
  public let input: Value
  public let linears: [Op]

  /// The weight names of the members whose weight operand is a `param`.
  public var weightNames: [String] { linears.compactMap { $0.operands[1].definingOp?.paramName } }
}

extension Module {
  public func linearInputGroups() -> [LinearInputGroup] {
    var out: [LinearInputGroup] = []
    for f in functions {
      var byInput: [(Value, [Op])] = []
      for op in f.body where op.kind == .linear {
        let x = op.operands[0]
        if let i = byInput.firstIndex(where: { $0.0 === x }) { byInput[i].1.append(op) } else { byInput.append((x, [op])) }
      }
      out += byInput.filter { $0.1.count > 1 }.map { LinearInputGroup(function: f, input: $0.0, linears: $0.1) }
    }
    return out
  }

  /// Fused sets a vLLM-style backend would merge into one GEMM whose NVFP4 weights disagree:
  /// different global scales, or NVFP4 mixed with another scheme. One message per set.
  public func nvfp4FusionProblems() -> [Diagnostic] {
    var out: [Diagnostic] = []
    for g in linearInputGroups() {
      let names = g.weightNames
      let entries = names.map { weights.quantized($0) }
      let nv = entries.compactMap { e -> Float? in
        guard let e, case .nvfp4 = e.scheme else { return nil }
        return e.globalScale?.floats().first
      }
      guard !nv.isEmpty else { continue }
      let set = names.joined(separator: ", ")
      if nv.count != names.count {
        out.append(Diagnostic(.error, "fused set {\(set)} in @\(g.function.name) mixes NVFP4 with other schemes; vLLM runs the set as one GEMM", at: g.linears[0].location))
      } else if Set(nv.map(\.bitPattern)).count > 1 {
        out.append(Diagnostic(.error, "fused set {\(set)} in @\(g.function.name) has different NVFP4 global scales \(nv); run fuse-scales first", at: g.linears[0].location))
      }
    }
    return out
  }
}
