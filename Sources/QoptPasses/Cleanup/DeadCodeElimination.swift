import QoptIR

/// `dce`: erases ops whose results nothing uses, and weights (and their importance statistics)
/// no `param` refers to.
///
///     %w = param @"unused" : tensor<4xf32>      // erased, and its weight dropped
///     %y = silu %x : (…) -> …                    // erased when %y is unused
let deadCodeEliminationPass = Pass("dce", summary: "erase unused ops and unreferenced weights", options: NoOptions.self) {
  module, _, context in
  for f in module.functions {
    var changed = true
    while changed {
      changed = false
      var used = Set<ObjectIdentifier>()
      for op in f.body { for v in op.operands { used.insert(ObjectIdentifier(v)) } }
      for op in f.body.reversed() {
        guard let r = op.result, !used.contains(ObjectIdentifier(r)), op.kind != nil else { continue }
        context.erase(op)
        changed = true
      }
    }
  }
  let referenced = Set(module.allOps.compactMap(\.paramName))
  for name in module.weights.names where !referenced.contains(name) {
    context.removeWeight(name)
  }
  for name in module.importance.keys.sorted() where !referenced.contains(name) {
    context.setImportance(name, nil)
  }
}
