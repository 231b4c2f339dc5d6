import QoptIR

/// Sets of `linear` ops that read the same SSA value (q/k/v, gate/up in Llama), found from
/// the dataflow rather than from names. Sets of one are left out.
public enum LinearGroupsAnalysis: Analysis {
  public static let name = "linear-groups"

  public struct Group {
    public let function: Function
    public let input: Value
    public let linears: [Op]
  }

  public static func compute(_ module: Module, _ analyses: AnalysisManager) throws -> [Group] {
    var out: [Group] = []
    for f in module.functions {
      var byInput: [(Value, [Op])] = []
      for op in f.body where op.kind == .linear {
        let x = op.operands[0]
        if let i = byInput.firstIndex(where: { $0.0 === x }) { byInput[i].1.append(op) } else { byInput.append((x, [op])) }
      }
      out += byInput.filter { $0.1.count > 1 }.map { Group(function: f, input: $0.0, linears: $0.1) }
    }
    return out
  }
}
