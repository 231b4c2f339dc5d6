import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// Which linear weights a quantization pass touches, from `targets` and `ignore` written as
/// compressed-tensors configs write them: `Linear` (every linear weight except the output
/// head), a module or weight name, or a `re:` regex matched from the start of the name
/// (`NamePattern`: Python's `re.match`, in linear time).
///
/// The output head (a weight named `lm_head` or `output`, or one that is also an embedding
/// table), embeddings and MoE routers (a linear whose logits feed `moe_route`; llm-compressor's
/// recipes ignore `mlp.gate` the same way) are never selected by `Linear`, only by a pattern
/// that names them.
struct WeightTargets {
  var targets: [String]
  var ignore: [String]

  /// The selected weights as `(param op, weight name)`, each weight once, in module order.
  ///
  /// `ignore=lm_head` on a model whose output head is tied to the embedding table (nothing is
  /// named lm_head) is in nearly every recipe; it gets a `remark`, not an error.
  ///
  /// Under `-blocks=A..B` only the weights of those decoder blocks are selected (patterns are
  /// still checked against the whole module, so a typo fails the same way in every unit).
  func select(in module: Module, context: PassContext) throws -> [(Op, String)] {
    try context.restrictedToBlocks(select(in: module, remark: { context.remark($0) }))
  }

  /// As `select(in:context:)`, outside a pass run (a pass's `plan:`); `pass` names the errors
  /// and remarks, or the pass manager names the errors when it is empty.
  func select(
    in module: Module, pass: String = "", remark: (String) -> Void = { _ in }
  ) throws -> [(Op, String)] {
    func named(_ m: String) -> String { pass.isEmpty ? m : "\(pass): \(m)" }
    let tables = Set(
      module.allOps.filter { $0.kind == .embedding }.compactMap {
        $0.operands[1].definingOp?.paramName
      })
    let routers = Set(
      module.allOps.filter { $0.kind == .moeRoute }.compactMap { $0.operands.first?.definingOp }
        .filter { $0.kind == .linear }.compactMap { $0.operands[1].definingOp?.paramName })
    var candidates: [(Op, String)] = []
    var seen = Set<String>()
    for op in module.allOps where op.kind == .linear {
      guard let p = op.operands[1].definingOp, let name = p.paramName, seen.insert(name).inserted
      else { continue }
      candidates.append((p, name))
    }
    var usedTargets = Set<String>()
    var usedIgnore = Set<String>()
    var out: [(Op, String)] = []
    for (p, name) in candidates {
      let module = moduleName(name)
      let isHead =
        tables.contains(name) || module.hasSuffix("lm_head") || module == "output"
        || routers.contains(name)
      let hit = try targets.first { t in
        t == "Linear" ? !isHead : try matches(t, name, pass: pass)
      }
      guard let hit else { continue }
      usedTargets.insert(hit)
      if let ig = try ignore.first(where: { try matches($0, name, pass: pass) }) {
        usedIgnore.insert(ig)
        continue
      }
      out.append((p, name))
    }
    for ig in ignore where !usedIgnore.contains(ig) {
      // An ignore that matches a head or embedding not otherwise targeted is still meaningful.
      let anywhere = try module.allOps.compactMap(\.paramName).contains {
        try matches(ig, $0, pass: pass)
      }
      let namesHead = try matches(ig, "lm_head.weight", pass: pass)
      if !anywhere && namesHead && candidates.contains(where: { tables.contains($0.1) }) {
        remark(
          named(
            "ignore pattern '\(ig)' matches no weight: the output head is tied to the embedding table, which Linear never selects"
          ))
        continue
      }
      if !anywhere { throw PassError(pass: pass, "ignore pattern '\(ig)' matches no weight") }
    }
    for t in targets where t != "Linear" && !usedTargets.contains(t) {
      throw PassError(pass: pass, "target pattern '\(t)' matches no linear weight")
    }
    return out
  }

  /// `model.layers.0.mlp.up_proj.weight` → `model.layers.0.mlp.up_proj`.
  func moduleName(_ weight: String) -> String {
    weight.hasSuffix(".weight") ? String(weight.dropLast(7)) : weight
  }

  /// Whether `pattern` selects weight `name`; a bad `re:` pattern is an error of the pass
  /// that `select` runs for.
  func matches(_ pattern: String, _ name: String, pass: String = "") throws -> Bool {
    if pattern.hasPrefix("re:") {
      let re: NamePattern
      do { re = try NamePattern(String(pattern.dropFirst(3))) } catch {
        throw PassError(pass: pass, "\(error)")
      }
      return re.matchesPrefix(name) || re.matchesPrefix(moduleName(name))
    }
    return pattern == name || pattern == moduleName(name)
  }
}

extension Function {
  /// The linear weights of `selected` (by name) read in this function, each once, in op order:
  /// what a block-by-block pass (`autoround`, `gptq`) quantizes in one block.
  func linearWeights(in selected: [String: Op]) -> [(String, Op)] {
    var out: [(String, Op)] = []
    for op in body where op.kind == .linear {
      guard let p = op.operands[1].definingOp, let name = p.paramName, selected[name] != nil,
        !out.contains(where: { $0.0 == name })
      else { continue }
      out.append((name, p))
    }
    return out
  }
}
