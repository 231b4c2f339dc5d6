import QoptIR

/// `gptq<true-sequential>`'s order inside a block (the GPTQ paper's "true sequential", as
/// llm-compressor's sequential pipeline quantizes a Llama block): a linear is solved after every
/// selected linear whose output reaches its input, with a Hessian from the inputs those
/// already-rounded linears produce. On a Llama block: q/k/v, then o, then gate/up, then down.
///
/// The stage of a linear is the number of selected linears on the longest dataflow path into
/// its input, found from the block's ops (never from names).
package enum GPTQStages {
  /// `targets` split into stages, in dataflow order; each keeps `targets`' order.
  package static func split(_ targets: [(String, Op)], in f: Function) -> [[(String, Op)]] {
    let names = Set(targets.map(\.0))
    var depth: [ObjectIdentifier: Int] = [:]
    var stage: [String: Int] = [:]
    for op in f.body {
      var d = op.operands.map { depth[ObjectIdentifier($0)] ?? 0 }.max() ?? 0
      if op.kind == .linear, let n = op.operands[1].definingOp?.paramName, names.contains(n) {
        let s = depth[ObjectIdentifier(op.operands[0])] ?? 0
        stage[n] = max(stage[n] ?? 0, s)
        d = s + 1
      }
      if let r = op.result { depth[ObjectIdentifier(r)] = d }
    }
    let count = (stage.values.max() ?? 0) + 1
    var out = [[(String, Op)]](repeating: [], count: count)
    for t in targets { out[stage[t.0] ?? 0].append(t) }
    return out.filter { !$0.isEmpty }
  }
}
