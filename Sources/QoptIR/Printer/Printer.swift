/// Prints a module in the canonical text form; `Parser` reads it back to the same text.
///
///     module @tiny attributes {arch = "llama"}
///
///     func @block.0(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
///       %w = param @"model.layers.0.input_layernorm.weight" : tensor<64xf32>
///       %h = rms_norm %x, %w {eps = 1e-05} : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
///       return %h : tensor<?x64xf32>
///     }
public struct Printer {
  /// Dense weights with at most this many elements print inline (`= dense<[…]>`); larger ones
  /// print as references into the sidecar. 0 prints every weight by reference.
  public var inlineWeightLimit: Int

  public init(inlineWeightLimit: Int = 16) {
    self.inlineWeightLimit = inlineWeightLimit
  }

  /// The names of the weights this printer writes inline for `module` (the sidecar skips them).
  public func inlinedWeights(of module: Module) -> Set<String> {
    var out = Set<String>()
    for op in module.allOps {
      guard let name = op.paramName, let t = module.weights.dense(name),
        t.count <= inlineWeightLimit
      else { continue }
      out.insert(name)
    }
    return out
  }

  public func print(_ module: Module) -> String {
    var out = ""
    if module.name != nil || !module.attributes.isEmpty {
      out += "module"
      if let n = module.name { out += " " + Printer.symbol(n) }
      if !module.attributes.isEmpty {
        out += " attributes " + Printer.attributes(module.attributes)
      }
      out += "\n\n"
    }
    if !module.importance.isEmpty {
      for name in module.importance.keys.sorted() {
        out += importance(name, module.importance[name]!) + "\n"  // safe: iterating its keys
      }
      out += "\n"
    }
    var printedInline = Set<String>()
    for (i, f) in module.functions.enumerated() {
      if i > 0 { out += "\n" }
      out += print(f, weights: module.weights, printedInline: &printedInline)
    }
    return out
  }

  /// `importance @w {tokens = [N]} : tensor<1xCxf32>`, the sums inline when they are at most
  /// `inlineWeightLimit` values (else in the sidecar as `w#in_sum2`).
  func importance(_ name: String, _ s: ImportanceStats) -> String {
    let counts = s.tokens.map(String.init).joined(separator: ", ")
    let type = "tensor<\(s.experts)x\(s.columns)xf32>"
    var out = "importance \(Printer.symbol(name)) {tokens = [\(counts)]} : \(type)"
    if s.isResolved, s.sumSquares.count <= inlineWeightLimit {
      let values = s.sumSquares.map { Printer.float(Double($0)) }
      out += " = dense<[" + values.joined(separator: ", ") + "]>"
    }
    return out
  }

  /// The names of the importance statistics this printer writes inline.
  public func inlinedImportance(of module: Module) -> Set<String> {
    let inline = module.importance.filter {
      $0.value.isResolved && $0.value.sumSquares.count <= inlineWeightLimit
    }
    return Set(inline.keys)
  }

  func print(_ f: Function, weights: WeightStore, printedInline: inout Set<String>) -> String {
    let args = f.arguments.map { "%\($0.name): \(Printer.type($0.type))" }.joined(separator: ", ")
    var out = "func \(Printer.symbol(f.name))(\(args)) -> \(Printer.type(f.resultType)) {\n"
    for op in f.body {
      out += "  " + print(op, weights: weights, printedInline: &printedInline) + "\n"
    }
    return out + "}\n"
  }

  func print(_ op: Op, weights: WeightStore, printedInline: inout Set<String>) -> String {
    var s = op.result.map { "%\($0.name) = " } ?? ""
    let operandList = op.operands.map { "%\($0.name)" }.joined(separator: ", ")
    let operandTypes = "(" + op.operands.map { Printer.type($0.type) }.joined(separator: ", ") + ")"
    let resultType = op.result.map { Printer.type($0.type) } ?? "()"
    switch op.kind {
    case .param?:
      var attrs = op.attributes
      let name = attrs["name"]?.symbolValue ?? ""
      attrs["name"] = nil
      s += "param " + Printer.symbol(name)
      if !attrs.isEmpty { s += " " + Printer.attributes(attrs) }
      s += " : " + resultType
      if let t = weights.dense(name), t.count <= inlineWeightLimit, !printedInline.contains(name) {
        printedInline.insert(name)
        s += " = " + Printer.dense(t)
      }
    case .call?:
      var attrs = op.attributes
      let callee = attrs["callee"]?.symbolValue ?? ""
      attrs["callee"] = nil
      s += "call \(Printer.symbol(callee))(\(operandList))"
      if !attrs.isEmpty { s += " " + Printer.attributes(attrs) }
      s += " : \(operandTypes) -> \(resultType)"
    case .return?:
      s +=
        "return " + operandList + " : "
        + op.operands.map { Printer.type($0.type) }.joined(separator: ", ")
    case let kind?:
      s += kind.rawValue
      if !operandList.isEmpty { s += " " + operandList }
      if !op.attributes.isEmpty { s += " " + Printer.attributes(op.attributes) }
      s += " : \(operandTypes) -> \(resultType)"
    case nil:
      s += Printer.quoted(op.name) + "(" + operandList + ")"
      if !op.attributes.isEmpty { s += " " + Printer.attributes(op.attributes) }
      s += " : \(operandTypes) -> \(resultType)"
    }
    return s
  }

  // MARK: - Pieces

  /// `tensor<?x64xf32>`, `tensor<64x64x!q.int<4, sym, group=32, scale=f16>>`.
  public static func type(_ t: TensorType) -> String {
    var s = "tensor<"
    for d in t.shape { s += (d.map(String.init) ?? "?") + "x" }
    s += element(t.element)
    return s + ">"
  }

  public static func element(_ e: ElementType) -> String {
    switch e {
    case .plain(let d): d.rawValue
    case .quantized(let q): scheme(q)
    }
  }

  public static func scheme(_ q: QuantScheme) -> String {
    switch q {
    case .int(let s):
      "!q.int<\(s.bits), \(s.symmetric ? "sym" : "asym"), \(granularity(s.granularity)), scale=\(s.scaleType.rawValue)>"
    case .nvfp4(let g): "!q.nvfp4<group=\(g)>"
    case .fp8(let g): "!q.fp8<\(granularity(g))>"
    case .ggml(let k): "!q.ggml<\(k.name)>"
    }
  }

  static func granularity(_ g: Granularity) -> String {
    switch g {
    case .tensor: "tensor"
    case .channel: "channel"
    case .group(let n): "group=\(n)"
    }
  }

  public static func attributes(_ a: AttributeDict) -> String {
    "{" + a.map { "\($0.key) = \(attribute($0.value))" }.joined(separator: ", ") + "}"
  }

  public static func attribute(_ a: Attribute) -> String {
    switch a {
    case .int(let v): String(v)
    case .float(let v): float(v)
    case .bool(let v): v ? "true" : "false"
    case .string(let v): quoted(v)
    case .symbol(let v): symbol(v)
    case .array(let v): "[" + v.map(attribute).joined(separator: ", ") + "]"
    case .type(let t): type(t)
    }
  }

  /// A float that reads back to the same bits and is never mistaken for an integer.
  public static func float(_ v: Double) -> String {
    if v.isNaN { return "nan" }
    if v.isInfinite { return v < 0 ? "-inf" : "inf" }
    let s = "\(v)"
    return s.contains(".") || s.contains("e") ? s : s + ".0"
  }

  static func dense(_ t: TensorData) -> String {
    let values: [String]
    switch t.dtype {
    case .f32, .f16, .bf16, .f8e4m3: values = t.floats().map { float(Double($0)) }
    default: values = t.floats().map { String(Int($0)) }
    }
    return "dense<[" + values.joined(separator: ", ") + "]>"
  }

  /// `@name` when `name` is a plain identifier, else `@"…"` with escapes.
  public static func symbol(_ name: String) -> String {
    "@" + (isBareIdentifier(name) ? name : quoted(name))
  }

  static func isBareIdentifier(_ s: String) -> Bool {
    guard let f = s.unicodeScalars.first,
      f == "_" || ("a"..."z").contains(f) || ("A"..."Z").contains(f)
    else { return false }
    return s.unicodeScalars.allSatisfy { isIdentifierChar($0) }
  }

  static func isIdentifierChar(_ u: Unicode.Scalar) -> Bool {
    ("a"..."z").contains(u) || ("A"..."Z").contains(u) || ("0"..."9").contains(u) || u == "_"
      || u == "." || u == "$" || u == "-"
  }

  /// A double-quoted string literal with `\"`, `\\`, `\n`, `\t` and `\xx` hex escapes.
  public static func quoted(_ s: String) -> String {
    var out = "\""
    for b in s.utf8 {
      switch b {
      case 0x22: out += "\\\""
      case 0x5C: out += "\\\\"
      case 0x0A: out += "\\n"
      case 0x09: out += "\\t"
      case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(b))
      default:
        let h = String(b, radix: 16, uppercase: true)
        out += "\\" + (h.count == 1 ? "0" + h : h)
      }
    }
    return out + "\""
  }
}

extension Module {
  /// The canonical text form (weights up to the default inline limit printed inline).
  public var text: String { Printer().print(self) }
}
