/// Parses the text form into a `Module`. Errors carry `file:line:col`; the parser never traps.
///
/// Grammar (see docs/ir.md):
///
///     file     ::= ('module' symbol? ('attributes' attr-dict)?)? (importance | func)*
///     importance ::= 'importance' symbol '{' 'tokens' '=' '[' int,* ']' '}' ':' type ('=' dense)?
///     func     ::= 'func' symbol '(' (%name ':' type),* ')' '->' type '{' op* '}'
///     op       ::= (%name '=')? ( 'param' symbol attr-dict? ':' type ('=' dense)?
///                               | 'call' symbol '(' operands ')' attr-dict? ':' fn-type
///                               | 'return' operands ':' types
///                               | mnemonic operands attr-dict? ':' fn-type
///                               | '"' name '"' '(' operands ')' attr-dict? ':' fn-type )
public struct Parser {
  var c: Cursor
  /// Inline `dense<…>` weights found while parsing, keyed by weight name.
  var inlineWeights: [String: (TensorData, SourceLocation)] = [:]
  /// Stand-ins for values used before any definition was seen (their types are unknown).
  var placeholders = Set<ObjectIdentifier>()

  public init(text: String, file: String) {
    c = Cursor(text: text, file: file)
  }

  /// Parses a whole module; inline weights land in its weight store.
  public static func parse(_ text: String, file: String = "<stdin>") throws(ParseError) -> Module {
    var p = Parser(text: text, file: file)
    let m = try p.parseModule()
    m.sourceFile = file
    return m
  }

  // MARK: - Module and functions

  mutating func parseModule() throws(ParseError) -> Module {
    let module = Module()
    c.skipTrivia()
    if peekKeyword("module") {
      try expectKeyword("module")
      c.skipTrivia()
      if c.peek == UInt8(ascii: "@") { module.name = try parseSymbol() }
      c.skipTrivia()
      if peekKeyword("attributes") {
        try expectKeyword("attributes")
        module.attributes = try parseAttributeDict()
      }
    }
    var names: [String: SourceLocation] = [:]
    while true {
      c.skipTrivia()
      if c.atEnd { break }
      if peekKeyword("importance") {
        try parseImportance(into: module)
        continue
      }
      let loc = c.location
      let f = try parseFunction()
      if let prev = names[f.name] {
        throw ParseError(.duplicate("redefinition of function @\(f.name) (first defined at line \(prev.line))"), at: loc)
      }
      names[f.name] = loc
      module.append(f)
    }
    for (name, (data, _)) in inlineWeights.sorted(by: { $0.value.1.line < $1.value.1.line }) {
      module.weights.set(name, .dense(data))
    }
    return module
  }

  mutating func parseFunction() throws(ParseError) -> Function {
    let loc = c.location
    try expectKeyword("func")
    c.skipTrivia()
    let name = try parseSymbol()
    try expect("(")
    var scope = Scope()
    var args: [Value] = []
    c.skipTrivia()
    if c.peek != UInt8(ascii: ")") {
      repeat {
        c.skipTrivia()
        let aloc = c.location
        let n = try parseValueName()
        try expect(":")
        let t = try parseType()
        let v = Value(name: n, type: t)
        try scope.define(v, at: aloc)
        args.append(v)
        c.skipTrivia()
      } while consume(",")
    }
    try expect(")")
    try expect("->")
    let rt = try parseType()
    let f = Function(name: name, arguments: args, resultType: rt)
    f.location = loc
    try expect("{")
    while true {
      c.skipTrivia()
      if c.atEnd { throw ParseError(.unexpectedEndOfFile(expected: "'}' to close function @\(name)"), at: c.location) }
      if consume("}") { break }
      f.append(try parseOp(&scope))
    }
    if let (n, use) = scope.pending.min(by: { $0.value.line < $1.value.line }) {
      throw ParseError(.undefinedValue(n), at: use)
    }
    return f
  }

  // MARK: - Ops

  mutating func parseOp(_ scope: inout Scope) throws(ParseError) -> Op {
    let loc = c.location
    var resultName: String?
    if c.peek == UInt8(ascii: "%") {
      resultName = try parseValueName()
      try expect("=")
    }
    c.skipTrivia()
    let op: Op
    if c.peek == UInt8(ascii: "\"") {
      let name = try parseString()
      try expect("(")
      let operands = try parseOperands(&scope, until: ")")
      try expect(")")
      let attrs = try parseOptionalAttributeDict()
      op = try finish(Op(name, operands: operands, attributes: attrs, location: loc), resultName, &scope, loc)
    } else {
      let mloc = c.location
      let mnemonic = try parseIdentifier("an op name")
      switch mnemonic {
      case "param":
        c.skipTrivia()
        let sym = try parseSymbol()
        var attrs = try parseOptionalAttributeDict()
        attrs["name"] = .symbol(sym)
        try expect(":")
        let t = try parseType()
        let o = Op("param", attributes: attrs, location: loc)
        o.setResult(Value(name: resultName ?? "", type: t))
        c.skipTrivia()
        if consume("=") { try parseInlineWeight(sym, type: t) }
        guard let resultName else { throw ParseError(.expected("a result name for 'param'", found: "none"), at: loc) }
        try scope.define(o.result!, named: resultName, at: loc)  // safe: set above
        op = o
      case "call":
        c.skipTrivia()
        let callee = try parseSymbol()
        try expect("(")
        let operands = try parseOperands(&scope, until: ")")
        try expect(")")
        var attrs = try parseOptionalAttributeDict()
        attrs["callee"] = .symbol(callee)
        op = try finish(Op("call", operands: operands, attributes: attrs, location: loc), resultName, &scope, loc)
      case "return":
        if resultName != nil { throw ParseError(.expected("no result for 'return'", found: "a result name"), at: loc) }
        let operands = try parseOperands(&scope, until: ":")
        try expect(":")
        var types: [TensorType] = []
        for _ in operands {
          if !types.isEmpty { try expect(",") }
          types.append(try parseType())
        }
        try checkOperandTypes(operands, types, at: loc)
        op = Op("return", operands: operands, location: loc)
      default:
        guard OpKind(rawValue: mnemonic) != nil else {
          throw ParseError(.expected("a known op name (write other ops in the generic form \"name\"(…))", found: "'\(mnemonic)'"), at: mloc)
        }
        let operands = try parseOperands(&scope, until: "{:")
        let attrs = try parseOptionalAttributeDict()
        op = try finish(Op(mnemonic, operands: operands, attributes: attrs, location: loc), resultName, &scope, loc)
      }
    }
    return op
  }

  /// Parses `: (types) -> type`, checks operand types, attaches the result.
  mutating func finish(_ op: Op, _ resultName: String?, _ scope: inout Scope, _ loc: SourceLocation) throws(ParseError) -> Op {
    try expect(":")
    try expect("(")
    var types: [TensorType] = []
    c.skipTrivia()
    if c.peek != UInt8(ascii: ")") {
      repeat { types.append(try parseType()) } while consume(",")
    }
    try expect(")")
    try expect("->")
    c.skipTrivia()
    var result: TensorType?
    if consume("(") {
      try expect(")")
    } else {
      result = try parseType()
    }
    guard types.count == op.operands.count else {
      throw ParseError(.typeMismatch("'\(op.name)' has \(op.operands.count) operands but its signature lists \(types.count) types"), at: loc)
    }
    try checkOperandTypes(op.operands, types, at: loc)
    switch (resultName, result) {
    case (let n?, let t?):
      let v = Value(name: n, type: t)
      op.setResult(v)
      try scope.define(v, at: loc)
    case (nil, nil): break
    case (nil, _?): throw ParseError(.expected("a result name for '\(op.name)' (its signature has a result type)", found: "none"), at: loc)
    case (_?, nil): throw ParseError(.expected("a result type for '%\(resultName ?? "")'", found: "'()'"), at: loc)
    }
    return op
  }

  func checkOperandTypes(_ operands: [Value], _ types: [TensorType], at loc: SourceLocation) throws(ParseError) {
    for (i, (v, t)) in zip(operands, types).enumerated() where v.type != t && !placeholders.contains(ObjectIdentifier(v)) {
      throw ParseError(.typeMismatch("operand #\(i) '%\(v.name)' has type \(Printer.type(v.type)) but the signature says \(Printer.type(t))"), at: loc)
    }
  }

  mutating func parseOperands(_ scope: inout Scope, until stops: String) throws(ParseError) -> [Value] {
    var out: [Value] = []
    c.skipTrivia()
    if c.peek != UInt8(ascii: "%") { return out }
    repeat {
      c.skipTrivia()
      let loc = c.location
      let n = try parseValueName()
      let (v, placeholder) = scope.use(n, at: loc)
      if placeholder { placeholders.insert(ObjectIdentifier(v)) }
      out.append(v)
      c.skipTrivia()
    } while consume(",")
    return out
  }

  mutating func parseInlineWeight(_ name: String, type t: TensorType) throws(ParseError) {
    let loc = c.location
    try expectKeyword("dense")
    try expect("<")
    try expect("[")
    var values: [Double] = []
    c.skipTrivia()
    if c.peek != UInt8(ascii: "]") {
      repeat {
        c.skipTrivia()
        values.append(try parseNumberLiteral().double)
      } while consume(",")
    }
    try expect("]")
    try expect(">")
    guard let dtype = t.element.dtype else {
      throw ParseError(.typeMismatch("inline data needs a plain element type, found \(Printer.type(t))"), at: loc)
    }
    guard t.isStatic, let n = t.elementCount else {
      throw ParseError(.typeMismatch("inline data needs a static shape, found \(Printer.type(t))"), at: loc)
    }
    guard values.count == n else {
      throw ParseError(.typeMismatch("dense<…> has \(values.count) values but \(Printer.type(t)) holds \(n)"), at: loc)
    }
    guard inlineWeights[name] == nil else {
      throw ParseError(.duplicate("weight @\(name) already has inline data"), at: loc)
    }
    let shape = t.dims
    let data: TensorData
    switch dtype {
    case .f32, .f16, .bf16: data = TensorData(floats: values.map { Float($0) }, shape: shape, as: dtype)
    case .i8, .u8, .i32, .i64:
      var bytes: [UInt8] = []
      for v in values {
        guard v.rounded() == v else { throw ParseError(.invalidNumber("\(v) is not an integer"), at: loc) }
        switch dtype {
        case .i8: guard let x = Int8(exactly: v) else { throw ParseError(.invalidNumber("\(v) out of range for i8"), at: loc) }; bytes.append(UInt8(bitPattern: x))
        case .u8: guard let x = UInt8(exactly: v) else { throw ParseError(.invalidNumber("\(v) out of range for u8"), at: loc) }; bytes.append(x)
        case .i32: guard let x = Int32(exactly: v) else { throw ParseError(.invalidNumber("\(v) out of range for i32"), at: loc) }; withUnsafeBytes(of: x.littleEndian) { bytes += $0 }
        default: guard let x = Int64(exactly: v) else { throw ParseError(.invalidNumber("\(v) out of range for i64"), at: loc) }; withUnsafeBytes(of: x.littleEndian) { bytes += $0 }
        }
      }
      data = TensorData(dtype: dtype, shape: shape, bytes: bytes)
    case .f8e4m3:
      throw ParseError(.typeMismatch("inline data is not supported for f8e4m3"), at: loc)
    }
    inlineWeights[name] = (data, loc)
  }
}

/// Values visible in one function, with forward references remembered so that a use before
/// the definition is reported as such rather than as an unknown name.
struct Scope {
  var values: [String: (Value, SourceLocation)] = [:]
  var pending: [String: SourceLocation] = [:]

  mutating func define(_ v: Value, at loc: SourceLocation) throws(ParseError) {
    try define(v, named: v.name, at: loc)
  }

  mutating func define(_ v: Value, named name: String, at loc: SourceLocation) throws(ParseError) {
    v.name = name
    if let use = pending[name] {
      throw ParseError(.usedBeforeDefinition(name, definedAt: loc), at: use)
    }
    if let (_, prev) = values[name] { throw ParseError(.redefinedValue(name, previous: prev), at: loc) }
    values[name] = (v, loc)
  }

  mutating func use(_ name: String, at loc: SourceLocation) -> (Value, placeholder: Bool) {
    if let (v, _) = values[name] { return (v, false) }
    if pending[name] == nil { pending[name] = loc }
    return (Value(name: name, type: TensorType([], .f32)), true)
  }
}
