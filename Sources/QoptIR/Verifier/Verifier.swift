/// Checks a module: SSA dominance (straight-line: defined before use), one terminator per
/// function, per-op type and shape rules (`OpRules.swift`), calls against their callees, and
/// `param` ops against the weight store (existence, dtype, shape, quantization scheme).
///
/// Reports every problem it finds; never traps.
public struct Verifier {
  /// Whether `param` ops must resolve in the weight store. Off for modules read from standard
  /// input, which have no sidecar.
  public var checkWeights: Bool

  public init(checkWeights: Bool = true) { self.checkWeights = checkWeights }

  public func verify(_ module: Module) throws(VerifyError) {
    let d = diagnose(module)
    if !d.isEmpty { throw VerifyError(d) }
  }

  public func diagnose(_ module: Module) -> [Diagnostic] {
    var out: [Diagnostic] = []
    var seen = Set<String>()
    for f in module.functions {
      if !seen.insert(f.name).inserted {
        out.append(Diagnostic(.error, "function @\(f.name) is defined more than once", at: f.location))
      }
      out += verify(f, in: module)
    }
    out += verifyImportance(module)
    return out
  }

  /// Importance statistics: sums present (when weights are checked) and as wide as the input
  /// of the `param` they name. A name no `param` uses is allowed (`dce` drops it).
  func verifyImportance(_ module: Module) -> [Diagnostic] {
    guard !module.importance.isEmpty else { return [] }
    var inputs: [String: Int] = [:]
    for op in module.allOps {
      if let name = op.paramName, let last = op.result?.type.shape.last, let d = last {
        inputs[name] = d
      }
    }
    var out: [Diagnostic] = []
    for name in module.importance.keys.sorted() {
      let s = module.importance[name]!  // safe: iterating its keys
      let sym = Printer.symbol(name)
      if checkWeights && !s.isResolved {
        let want = "\(s.experts) × \(s.columns)"
        let m = "importance \(sym) has \(s.sumSquares.count) sums, expected \(want)"
        out.append(Diagnostic(.error, m, at: nil))
      }
      if let d = inputs[name], d != s.columns {
        let m = "importance \(sym) has \(s.columns) columns but the weight's input is \(d) wide"
        out.append(Diagnostic(.error, m, at: nil))
      }
    }
    return out
  }

  func verify(_ f: Function, in module: Module) -> [Diagnostic] {
    var out: [Diagnostic] = []
    var defined = Set(f.arguments.map { ObjectIdentifier($0) })
    var names = Set<String>()
    for a in f.arguments where !names.insert(a.name).inserted {
      out.append(Diagnostic(.error, "@\(f.name): argument name '%\(a.name)' is used twice", at: f.location))
    }
    for (i, op) in f.body.enumerated() {
      func report(_ m: String) {
        out.append(Diagnostic(.error, op.location == nil ? "\(op.path): \(m)" : "'\(op.name)' op \(m)", at: op.location))
      }
      for (k, v) in op.operands.enumerated() where !defined.contains(ObjectIdentifier(v)) {
        report("operand #\(k) '%\(v.name)' is not defined before this op")
      }
      if let r = op.result {
        defined.insert(ObjectIdentifier(r))
        if !names.insert(r.name).inserted { report("result name '%\(r.name)' is already used in @\(f.name)") }
      }
      if op.kind == .return && i != f.body.count - 1 { report("must be the last op of the function") }
      for m in OpRules.check(op, module: module) { report(m) }
      if op.kind == .param, checkWeights { for m in checkParam(op, module.weights) { report(m) } }
    }
    if let last = f.body.last, last.kind == .return {
      if last.operands.count != 1 || !last.operands[0].type.isCompatible(with: f.resultType) {
        let got = last.operands.map { Printer.type($0.type) }.joined(separator: ", ")
        out.append(Diagnostic(.error, "'return' op returns \(got) but @\(f.name) is declared to return \(Printer.type(f.resultType))", at: last.location))
      }
    } else {
      out.append(Diagnostic(.error, "function @\(f.name) does not end with 'return'", at: f.location))
    }
    return out
  }

  func checkParam(_ op: Op, _ store: WeightStore) -> [String] {
    guard let name = op.paramName, let t = op.result?.type, t.isStatic else { return [] }
    guard let entry = store[name] else {
      let src = store.sourcePath.map { " (sidecar '\($0)')" } ?? " (no sidecar file)"
      return ["weight @\(Printer.symbol(name).dropFirst()) not found in the weight store\(src)"]
    }
    var out: [String] = []
    if entry.shape != t.dims {
      out.append("weight @\(Printer.symbol(name).dropFirst()) has shape \(entry.shape) in the weight store but the IR declares \(t.dims)")
    }
    switch (entry, t.element) {
    case (.dense(let d), .plain(let dt)) where d.dtype != dt:
      out.append("weight @\(Printer.symbol(name).dropFirst()) is \(d.dtype.rawValue) in the weight store but the IR declares \(dt.rawValue)")
    case (.dense(let d), .quantized):
      out.append("weight @\(Printer.symbol(name).dropFirst()) is a plain \(d.dtype.rawValue) tensor in the weight store but the IR declares a quantized type")
    case (.quantized(let q), .plain(let dt)):
      out.append("weight @\(Printer.symbol(name).dropFirst()) is quantized (\(Printer.scheme(q.scheme))) in the weight store but the IR declares \(dt.rawValue)")
    case (.quantized(let q), .quantized(let s)):
      if q.scheme != s {
        out.append("weight @\(Printer.symbol(name).dropFirst()) is \(Printer.scheme(q.scheme)) in the weight store but the IR declares \(Printer.scheme(s))")
      }
      out += OpRules.checkQuantizedParts(q, name: name)
      if case .nvfp4 = q.scheme, let attr = op.attributes["global_scale"]?.doubleValue,
        let gs = q.globalScale?.floats().first, Float(attr) != gs
      {
        out.append("weight @\(Printer.symbol(name).dropFirst()) has global_scale = \(attr) but its stored global scale is \(gs)")
      }
    default: break
    }
    return out
  }
}

extension Module {
  /// Verifies with weight checks unless the module has no weight source.
  public func verify() throws(VerifyError) {
    try Verifier(checkWeights: hasWeightSource).verify(self)
  }

  /// Whether `param` ops can be resolved: the module came from a file (with or without a
  /// sidecar) or was built in memory, rather than read from standard input.
  public var hasWeightSource: Bool { sourceFile != "<stdin>" }
}
