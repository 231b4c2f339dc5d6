/// The expert each linear of a mixture-of-experts block belongs to, found from the dataflow
/// (never from names): a linear whose input descends from `moe_dispatch {expert = e}` (through
/// other ops' activation operands) belongs to expert e of that dispatch's function.
public struct MoEExpertMembership: Hashable, Sendable {
  public var function: String
  public var expert: Int
}

extension Module {
  /// Weight name → expert, for every linear inside a MoE expert.
  public func moeExpertLinears() -> [String: MoEExpertMembership] {
    var out: [String: MoEExpertMembership] = [:]
    for f in functions {
      var expertOf: [ObjectIdentifier: Int] = [:]
      for op in f.body {
        guard let r = op.result else { continue }
        if op.kind == .moeDispatch, let e = op.attributes["expert"]?.intValue {
          expertOf[ObjectIdentifier(r)] = e
          continue
        }
        // Activations only: a param operand is no route to an expert.
        guard op.kind != .moeCombine,
          let e = op.operands.lazy.compactMap({ expertOf[ObjectIdentifier($0)] }).first
        else { continue }
        expertOf[ObjectIdentifier(r)] = e
        if op.kind == .linear, let name = op.operands[1].definingOp?.paramName {
          out[name] = MoEExpertMembership(function: f.name, expert: e)
        }
      }
    }
    return out
  }
}
