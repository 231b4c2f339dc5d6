import QoptIR

/// Which weights `assign-schemes` assigns, and the bytes of the others for `size=`.
enum SchemeWeights {
  /// `targets=auto`: with ggml candidates every linear weight including the output head, and
  /// every embedding table (the GGUF backend quantizes them all); otherwise `Linear`.
  static func select(
    _ module: Module, _ options: AssignSchemesOptions, context: PassContext
  ) throws -> [(Op, String)] {
    let gguf =
      options.candidates.contains("gguf")
      || options.candidates.contains { AssignedScheme.ggmlNames.contains($0) }
    let auto = options.targets == ["auto"]
    let targets = auto ? (gguf ? ["re:.*"] : ["Linear"]) : options.targets
    var out = try WeightTargets(targets: targets, ignore: options.ignore).select(
      in: module, context: context)
    guard auto && gguf else { return out }
    var seen = Set(out.map(\.1))
    let matcher = WeightTargets(targets: [], ignore: options.ignore)
    for op in module.allOps where op.kind == .embedding {
      guard let p = op.operands[1].definingOp, let name = p.paramName, seen.insert(name).inserted
      else { continue }
      if try options.ignore.contains(where: { try matcher.matches($0, name) }) { continue }
      out.append((p, name))
    }
    return out
  }

  /// Tensor bytes of every model weight not in `assigned`: 1-D at 4 bytes per element (GGUF's
  /// f32 norms), others at their stored size.
  static func otherBytes(_ module: Module, excluding assigned: Set<String>) -> Int {
    var total = 0
    // Only what `param` ops read: the store also holds non-tensor blobs (tokenizer files).
    let params = Set(module.allOps.compactMap(\.paramName))
    for name in module.weights.names where params.contains(name) && !assigned.contains(name) {
      guard let e = module.weights[name] else { continue }
      let n = e.shape.reduce(1, *)
      switch e {
      case .dense(let t): total += e.shape.count < 2 ? 4 * n : n * t.dtype.byteSize
      case .quantized(let q): total += q.codes.byteCount
      }
    }
    return total
  }
}

/// `overrides=NAME_OR_RE:SCHEME`: the last pin that matches a weight wins.
struct SchemePins {
  var pins: [(pattern: String, regex: NamePattern?, scheme: AssignedScheme)] = []

  init(_ list: [String]) throws {
    for item in list {
      guard let colon = item.lastIndex(of: ":"),
        let s = AssignedScheme(spelling: String(item[item.index(after: colon)...]))
      else {
        throw PassError("overrides: '\(item)' is not NAME_OR_RE:SCHEME with a scheme spelling")
      }
      let p = String(item[..<colon])
      var re: NamePattern?
      if p.hasPrefix("re:") {
        do { re = try NamePattern(String(p.dropFirst(3))) } catch {
          throw PassError("overrides: '\(p)': \(error)")
        }
      }
      pins.append((p, re, s))
    }
  }

  func scheme(for name: String) throws -> AssignedScheme? {
    pins.last { $0.regex?.search(name) ?? ($0.pattern == name) }?.scheme
  }
}
