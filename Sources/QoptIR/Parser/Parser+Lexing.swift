/// A number literal as written: integers stay exact, anything with `.`/`e`/`inf`/`nan` is a float.
enum NumberLiteral {
  case int(Int)
  case float(Double)
  var double: Double {
    switch self {
    case .int(let i): Double(i)
    case .float(let d): d
    }
  }
}

extension Parser {
  func error(_ what: String) -> ParseError {
    if c.atEnd { return ParseError(.unexpectedEndOfFile(expected: what), at: c.location) }
    return ParseError(.expected(what, found: c.foundDescription), at: c.location)
  }

  /// Consumes `token` (after trivia) if it is next.
  mutating func consume(_ token: String) -> Bool {
    c.skipTrivia()
    let t = Array(token.utf8)
    guard c.pos + t.count <= c.bytes.count, Array(c.bytes[c.pos..<(c.pos + t.count)]) == t else {
      return false
    }
    for _ in t { c.advance() }
    return true
  }

  mutating func expect(_ token: String) throws(ParseError) {
    guard consume(token) else { throw error("'\(token)'") }
  }

  mutating func peekKeyword(_ word: String) -> Bool {
    c.skipTrivia()
    let w = Array(word.utf8)
    guard c.pos + w.count <= c.bytes.count, Array(c.bytes[c.pos..<(c.pos + w.count)]) == w else {
      return false
    }
    return !Cursor.isIdentChar(c.peek(w.count))
  }

  mutating func expectKeyword(_ word: String) throws(ParseError) {
    guard peekKeyword(word) else { throw error("'\(word)'") }
    for _ in word.utf8 { c.advance() }
  }

  mutating func parseIdentifier(_ what: String) throws(ParseError) -> String {
    c.skipTrivia()
    guard Cursor.isIdentStart(c.peek) else { throw error(what) }
    let start = c.pos
    while !c.atEnd && Cursor.isIdentChar(c.peek) { c.advance() }
    return String(decoding: c.bytes[start..<c.pos], as: UTF8.self)
  }

  /// `%name`.
  mutating func parseValueName() throws(ParseError) -> String {
    c.skipTrivia()
    guard c.peek == UInt8(ascii: "%") else { throw error("a value name like '%x'") }
    c.advance()
    let start = c.pos
    while !c.atEnd && Cursor.isIdentChar(c.peek) { c.advance() }
    guard c.pos > start else { throw error("a value name after '%'") }
    return String(decoding: c.bytes[start..<c.pos], as: UTF8.self)
  }

  /// `@name` or `@"quoted name"`.
  mutating func parseSymbol() throws(ParseError) -> String {
    c.skipTrivia()
    guard c.peek == UInt8(ascii: "@") else { throw error("a symbol like '@name'") }
    c.advance()
    if c.peek == UInt8(ascii: "\"") { return try parseString() }
    guard Cursor.isIdentStart(c.peek) else { throw error("a symbol name after '@'") }
    let start = c.pos
    while !c.atEnd && Cursor.isIdentChar(c.peek) { c.advance() }
    return String(decoding: c.bytes[start..<c.pos], as: UTF8.self)
  }

  /// A double-quoted string with `\"`, `\\`, `\n`, `\t` and two-digit hex escapes.
  mutating func parseString() throws(ParseError) -> String {
    c.skipTrivia()
    let loc = c.location
    guard c.peek == UInt8(ascii: "\"") else { throw error("a string") }
    c.advance()
    var out: [UInt8] = []
    while true {
      guard !c.atEnd, c.peek != 0x0A else {
        throw ParseError(.invalidString("unterminated string"), at: loc)
      }
      let b = c.peek
      c.advance()
      if b == UInt8(ascii: "\"") { break }
      if b != UInt8(ascii: "\\") { out.append(b); continue }
      guard !c.atEnd else { throw ParseError(.invalidString("unterminated string"), at: loc) }
      let e = c.peek
      c.advance()
      switch e {
      case UInt8(ascii: "\""): out.append(0x22)
      case UInt8(ascii: "\\"): out.append(0x5C)
      case UInt8(ascii: "n"): out.append(0x0A)
      case UInt8(ascii: "t"): out.append(0x09)
      default:
        let hex = String(decoding: [e, c.peek], as: UTF8.self)
        guard let v = UInt8(hex, radix: 16) else {
          throw ParseError(
            .invalidString("unknown escape '\\\(String(decoding: [e], as: UTF8.self))'"),
            at: c.location)
        }
        c.advance()
        out.append(v)
      }
    }
    guard let s = String(validating: out, as: UTF8.self) else {
      throw ParseError(.invalidString("string is not valid UTF-8"), at: loc)
    }
    return s
  }

  /// An integer or float literal, or `inf` / `-inf` / `nan`.
  mutating func parseNumberLiteral() throws(ParseError) -> NumberLiteral {
    c.skipTrivia()
    let loc = c.location
    let start = c.pos
    if c.peek == UInt8(ascii: "-") || c.peek == UInt8(ascii: "+") { c.advance() }
    if peekKeyword("inf") || peekKeyword("nan") {
      let neg = c.bytes[start] == UInt8(ascii: "-")
      let isInf = peekKeyword("inf")
      for _ in 0..<3 { c.advance() }
      return .float(isInf ? (neg ? -.infinity : .infinity) : .nan)
    }
    guard Cursor.isDigit(c.peek) else { throw error("a number") }
    var isFloat = false
    while Cursor.isDigit(c.peek) { c.advance() }
    if c.peek == UInt8(ascii: "."), Cursor.isDigit(c.peek(1)) {
      isFloat = true
      c.advance()
      while Cursor.isDigit(c.peek) { c.advance() }
    }
    if c.peek == UInt8(ascii: "e") || c.peek == UInt8(ascii: "E") {
      isFloat = true
      c.advance()
      if c.peek == UInt8(ascii: "+") || c.peek == UInt8(ascii: "-") { c.advance() }
      guard Cursor.isDigit(c.peek) else {
        throw ParseError(.invalidNumber("missing exponent digits"), at: loc)
      }
      while Cursor.isDigit(c.peek) { c.advance() }
    }
    let text = String(decoding: c.bytes[start..<c.pos], as: UTF8.self)
    if !isFloat {
      guard let i = Int(text) else {
        throw ParseError(.invalidNumber("'\(text)' does not fit in 64 bits"), at: loc)
      }
      return .int(i)
    }
    guard let d = Double(text) else { throw ParseError(.invalidNumber("'\(text)'"), at: loc) }
    return .float(d)
  }

  // MARK: - Types

  /// `tensor<?x64xf32>` or `tensor<64x64x!q.int<4, sym, group=32, scale=f16>>`.
  mutating func parseType() throws(ParseError) -> TensorType {
    c.skipTrivia()
    let loc = c.location
    let word = try parseIdentifier("a type like 'tensor<…>'")
    guard word == "tensor" else { throw ParseError(.unknownType(word), at: loc) }
    guard c.peek == UInt8(ascii: "<") else { throw error("'<' after 'tensor'") }
    c.advance()
    var shape: [Int?] = []
    while c.peek == UInt8(ascii: "?") || Cursor.isDigit(c.peek) {
      let dloc = c.location
      if c.peek == UInt8(ascii: "?") {
        c.advance()
        shape.append(nil)
      } else {
        let start = c.pos
        while Cursor.isDigit(c.peek) { c.advance() }
        let text = String(decoding: c.bytes[start..<c.pos], as: UTF8.self)
        guard let d = Int(text), d <= 1 << 40 else {
          throw ParseError(.invalidNumber("dimension '\(text)' is too large"), at: dloc)
        }
        shape.append(d)
      }
      guard c.peek == UInt8(ascii: "x") else { throw error("'x' after a dimension") }
      c.advance()
    }
    let element = try parseElementType()
    guard c.peek == UInt8(ascii: ">") else { throw error("'>' to close the tensor type") }
    c.advance()
    return TensorType(shape, element)
  }

  mutating func parseElementType() throws(ParseError) -> ElementType {
    let loc = c.location
    if c.peek == UInt8(ascii: "!") {
      c.advance()
      let name = try parseIdentifier("a quantized type name")
      return .quantized(try parseScheme(name, at: loc))
    }
    guard Cursor.isIdentStart(c.peek) else { throw error("an element type") }
    let start = c.pos
    while !c.atEnd && (Cursor.isIdentStart(c.peek) || Cursor.isDigit(c.peek)) { c.advance() }
    let name = String(decoding: c.bytes[start..<c.pos], as: UTF8.self)
    guard let d = DType(rawValue: name) else { throw ParseError(.unknownType(name), at: loc) }
    return .plain(d)
  }

  /// The parameters of `!q.int<…>`, `!q.nvfp4<…>`, `!q.fp8<…>`, `!q.ggml<…>`.
  mutating func parseScheme(
    _ name: String, at loc: SourceLocation
  ) throws(ParseError) -> QuantScheme {
    try expect("<")
    var items: [(String, String?, SourceLocation)] = []
    repeat {
      c.skipTrivia()
      let iloc = c.location
      let start = c.pos
      while !c.atEnd && (Cursor.isIdentChar(c.peek)) { c.advance() }
      let key = String(decoding: c.bytes[start..<c.pos], as: UTF8.self)
      guard !key.isEmpty else { throw error("a scheme parameter") }
      var value: String?
      if consume("=") {
        c.skipTrivia()
        let vs = c.pos
        while !c.atEnd && Cursor.isIdentChar(c.peek) { c.advance() }
        value = String(decoding: c.bytes[vs..<c.pos], as: UTF8.self)
      }
      items.append((key, value, iloc))
    } while consume(",")
    try expect(">")
    func int(_ s: String?, _ l: SourceLocation) throws(ParseError) -> Int {
      guard let s, let v = Int(s), v > 0 else {
        throw ParseError(.invalidNumber("expected a positive integer, found '\(s ?? "")'"), at: l)
      }
      return v
    }
    switch name {
    case "q.int":
      var bits: Int?
      var sym: Bool?
      var gran: Granularity?
      var scale: DType?
      for (k, v, l) in items {
        switch (k, v) {
        case (_, nil) where Int(k) != nil:
          guard let b = Int(k), (2...8).contains(b) else {
            throw ParseError(.invalidNumber("bits must be 2...8, found \(k)"), at: l)
          }
          bits = b
        case ("sym", nil): sym = true
        case ("asym", nil): sym = false
        case ("tensor", nil): gran = .tensor
        case ("channel", nil): gran = .channel
        case ("group", _): gran = .group(try int(v, l))
        case ("scale", let s?):
          guard let d = DType(rawValue: s), [.f32, .f16, .bf16].contains(d) else {
            throw ParseError(.unknownType("scale dtype '\(s)' (expected f32, f16 or bf16)"), at: l)
          }
          scale = d
        default:
          throw ParseError(
            .expected("bits, sym/asym, tensor/channel/group=N or scale=T", found: "'\(k)'"), at: l)
        }
      }
      guard let bits, let sym, let gran, let scale else {
        throw ParseError(
          .expected(
            "!q.int<bits, sym|asym, tensor|channel|group=N, scale=T>", found: "an incomplete scheme"
          ), at: loc)
      }
      return .int(IntScheme(bits: bits, symmetric: sym, granularity: gran, scaleType: scale))
    case "q.nvfp4":
      guard items.count == 1, items[0].0 == "group" else {
        throw ParseError(.expected("!q.nvfp4<group=N>", found: "other parameters"), at: loc)
      }
      return .nvfp4(group: try int(items[0].1, items[0].2))
    case "q.fp8":
      guard items.count == 1 else {
        throw ParseError(
          .expected("!q.fp8<tensor|channel|group=N>", found: "other parameters"), at: loc)
      }
      switch (items[0].0, items[0].1) {
      case ("tensor", nil): return .fp8(.tensor)
      case ("channel", nil): return .fp8(.channel)
      case ("group", let v): return .fp8(.group(try int(v, items[0].2)))
      default:
        throw ParseError(
          .expected("tensor, channel or group=N", found: "'\(items[0].0)'"), at: items[0].2)
      }
    case "q.ggml":
      let names = GGMLBlockKind.allCases.map(\.name).joined(separator: ", ")
      guard items.count == 1, items[0].1 == nil, let k = GGMLBlockKind(name: items[0].0) else {
        throw ParseError(
          .expected("!q.ggml<T> with T one of \(names)", found: "'\(items[0].0)'"), at: items[0].2)
      }
      return .ggml(k)
    default:
      throw ParseError(.unknownType("!\(name)"), at: loc)
    }
  }

  // MARK: - Attributes

  mutating func parseOptionalAttributeDict() throws(ParseError) -> AttributeDict {
    c.skipTrivia()
    return c.peek == UInt8(ascii: "{") ? try parseAttributeDict() : AttributeDict()
  }

  mutating func parseAttributeDict() throws(ParseError) -> AttributeDict {
    try expect("{")
    var d = AttributeDict()
    c.skipTrivia()
    if consume("}") { return d }
    repeat {
      c.skipTrivia()
      let loc = c.location
      let key =
        c.peek == UInt8(ascii: "\"") ? try parseString() : try parseIdentifier("an attribute name")
      guard d[key] == nil else {
        throw ParseError(.duplicate("duplicate attribute '\(key)'"), at: loc)
      }
      try expect("=")
      d[key] = try parseAttribute(depth: 0)
    } while consume(",")
    try expect("}")
    return d
  }

  mutating func parseAttribute(depth: Int) throws(ParseError) -> Attribute {
    c.skipTrivia()
    guard depth < 64 else {
      throw ParseError(
        .expected("an attribute nested less than 64 deep", found: "deeper nesting"), at: c.location)
    }
    let ch = c.peek
    if ch == UInt8(ascii: "\"") { return .string(try parseString()) }
    if ch == UInt8(ascii: "@") { return .symbol(try parseSymbol()) }
    if ch == UInt8(ascii: "[") {
      c.advance()
      var items: [Attribute] = []
      c.skipTrivia()
      if consume("]") { return .array(items) }
      repeat { items.append(try parseAttribute(depth: depth + 1)) } while consume(",")
      try expect("]")
      return .array(items)
    }
    if peekKeyword("true") { try expectKeyword("true"); return .bool(true) }
    if peekKeyword("false") { try expectKeyword("false"); return .bool(false) }
    if peekKeyword("tensor") { return .type(try parseType()) }
    if ch == UInt8(ascii: "-") || ch == UInt8(ascii: "+") || Cursor.isDigit(ch)
      || peekKeyword("inf") || peekKeyword("nan")
    {
      switch try parseNumberLiteral() {
      case .int(let i): return .int(i)
      case .float(let d): return .float(d)
      }
    }
    throw error("an attribute value")
  }
}
