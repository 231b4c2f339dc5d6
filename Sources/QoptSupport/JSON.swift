/// A JSON value as qopt's readers need it: integers kept exact, object key order kept.
///
/// qopt parses JSON itself (safetensors headers, config.json, tokenizer.json, index files) so
/// that every error names a byte offset and nesting depth is bounded.
public indirect enum JSON: Hashable, Sendable {
  case null
  case bool(Bool)
  case int(Int)
  case double(Double)
  case string(String)
  case array([JSON])
  case object([(String, JSON)])

  public subscript(key: String) -> JSON? {
    if case .object(let pairs) = self { return pairs.first { $0.0 == key }?.1 }
    return nil
  }
  public var objectPairs: [(String, JSON)]? {
    if case .object(let p) = self { return p }
    return nil
  }
  public var arrayValue: [JSON]? {
    if case .array(let a) = self { return a }
    return nil
  }
  public var stringValue: String? {
    if case .string(let s) = self { return s }
    return nil
  }
  public var intValue: Int? {
    switch self {
    case .int(let i): i
    case .double(let d) where d.rounded() == d && abs(d) < 9.0e15: Int(d)
    default: nil
    }
  }
  public var doubleValue: Double? {
    switch self {
    case .int(let i): Double(i)
    case .double(let d): d
    default: nil
    }
  }
  public var boolValue: Bool? {
    if case .bool(let b) = self { return b }
    return nil
  }

  public static func == (a: JSON, b: JSON) -> Bool {
    switch (a, b) {
    case (.null, .null): true
    case (.bool(let x), .bool(let y)): x == y
    case (.int(let x), .int(let y)): x == y
    case (.double(let x), .double(let y)): x == y
    case (.string(let x), .string(let y)): x == y
    case (.array(let x), .array(let y)): x == y
    case (.object(let x), .object(let y)):
      x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    default: false
    }
  }
  public func hash(into h: inout Hasher) {
    switch self {
    case .null: h.combine(0)
    case .bool(let b): h.combine(b)
    case .int(let i): h.combine(i)
    case .double(let d): h.combine(d)
    case .string(let s): h.combine(s)
    case .array(let a): h.combine(a)
    case .object(let o):
      for (k, v) in o {
        h.combine(k)
        h.combine(v)
      }
    }
  }
}

/// A JSON syntax error at a byte offset of the parsed text.
public struct JSONError: Error, Hashable, Sendable, CustomStringConvertible {
  public var message: String
  public var offset: Int
  public var description: String { "\(message) at byte \(offset)" }
}

extension JSON {
  /// The deepest nesting accepted; deeper input is an error, never a stack overflow.
  public static let maxDepth = 128

  /// Parses one JSON document from UTF-8 bytes (trailing white space allowed).
  public static func parse(_ bytes: UnsafeRawBufferPointer) throws(JSONError) -> JSON {
    var p = JSONParser(bytes: bytes)
    p.skipSpace()
    let v = try p.value(depth: 0)
    p.skipSpace()
    guard p.pos == bytes.count else { throw JSONError(message: "trailing characters", offset: p.pos) }
    return v
  }

  public static func parse(_ text: String) throws(JSONError) -> JSON {
    try parse(Array(text.utf8))
  }

  public static func parse(_ bytes: [UInt8]) throws(JSONError) -> JSON {
    try withBytes(bytes) { buf throws(JSONError) in try parse(buf) }
  }

  /// Compact serialization (no spaces), keys in stored order.
  public var serialized: String { String(decoding: serializedBytes, as: UTF8.self) }

  /// The compact serialization as UTF-8 bytes (what writers put in files).
  public var serializedBytes: [UInt8] {
    var out: [UInt8] = []
    write(to: &out, indent: nil, level: 0)
    return out
  }

  /// Serialization with two-space indentation, as transformers writes config.json.
  public var pretty: String {
    var out: [UInt8] = []
    write(to: &out, indent: 2, level: 0)
    return String(decoding: out, as: UTF8.self)
  }

  /// Appends the serialization to `out` byte by byte (a tokenizer.json holds ~10^5 strings;
  /// building it through `String` appends cost more than the rest of a GGUF export).
  private func write(to out: inout [UInt8], indent: Int?, level: Int) {
    func newline(_ n: Int) {
      guard let indent else { return }
      out.append(0x0A)
      out.append(contentsOf: repeatElement(0x20, count: indent * n))
    }
    switch self {
    case .null: out += "null".utf8
    case .bool(let b): out += (b ? "true" : "false").utf8
    case .int(let i): JSON.appendInt(i, to: &out)
    case .double(let d): out += (d.isFinite ? "\(d)" : "null").utf8
    case .string(let s): JSON.appendQuoted(s, to: &out)
    case .array(let a):
      if a.isEmpty { out += "[]".utf8; return }
      out.append(UInt8(ascii: "["))
      for (i, v) in a.enumerated() {
        newline(level + 1)
        v.write(to: &out, indent: indent, level: level + 1)
        if i + 1 < a.count { out.append(UInt8(ascii: ",")) }
      }
      newline(level)
      out.append(UInt8(ascii: "]"))
    case .object(let o):
      if o.isEmpty { out += "{}".utf8; return }
      out.append(UInt8(ascii: "{"))
      for (i, (k, v)) in o.enumerated() {
        newline(level + 1)
        JSON.appendQuoted(k, to: &out)
        out.append(UInt8(ascii: ":"))
        if indent != nil { out.append(0x20) }
        v.write(to: &out, indent: indent, level: level + 1)
        if i + 1 < o.count { out.append(UInt8(ascii: ",")) }
      }
      newline(level)
      out.append(UInt8(ascii: "}"))
    }
  }

  /// A JSON string literal for `s`.
  public static func quote(_ s: String) -> String {
    var out: [UInt8] = []
    appendQuoted(s, to: &out)
    return String(decoding: out, as: UTF8.self)
  }

  /// Appends the JSON string literal for `s`: UTF-8 passes through, `"`, `\\` and control
  /// characters are escaped.
  /// Appends `s` as a JSON string literal (quotes, escapes) to `out`.
  public static func appendQuoted(_ s: String, to out: inout [UInt8]) {
    out.append(UInt8(ascii: "\""))
    var s = s
    s.withUTF8 { bytes in
      // Runs that need no escape go in with one append each (a tokenizer.json is ~10^5 keys).
      var run = 0
      for i in 0..<bytes.count {
        let b = bytes[i]
        if b >= 0x20 && b != UInt8(ascii: "\"") && b != UInt8(ascii: "\\") { continue }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<i]))
        run = i + 1
        switch b {
        case UInt8(ascii: "\""): out += #"\""#.utf8
        case UInt8(ascii: "\\"): out += #"\\"#.utf8
        case 0x0A: out += #"\n"#.utf8
        case 0x0D: out += #"\r"#.utf8
        case 0x09: out += #"\t"#.utf8
        default:
          let hex: [UInt8] = Array("0123456789abcdef".utf8)
          out += #"\u00"#.utf8
          out.append(hex[Int(b >> 4)])
          out.append(hex[Int(b & 0xF)])
        }
      }
      out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<bytes.count]))
    }
    out.append(UInt8(ascii: "\""))
  }

  /// Decimal digits of `i` without making a String.
  public static func appendInt(_ i: Int, to out: inout [UInt8]) {
    if i < 0 {
      out.append(UInt8(ascii: "-"))
      if i == .min { out += "9223372036854775808".utf8; return }
    }
    var v = i.magnitude
    var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 20 digits fit in 24 bytes
    let n = withUnsafeMutableBytes(of: &digits) { d -> Int in
      var k = 0
      repeat {
        d[k] = UInt8(ascii: "0") + UInt8(v % 10)
        v /= 10
        k += 1
      } while v > 0
      return k
    }
    withUnsafeBytes(of: &digits) { d in for k in stride(from: n - 1, through: 0, by: -1) { out.append(d[k]) } }
  }
}

private struct JSONParser {
  let bytes: UnsafeRawBufferPointer
  var pos = 0

  init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

  var atEnd: Bool { pos >= bytes.count }
  var cur: UInt8 { pos < bytes.count ? bytes[pos] : 0 }

  mutating func skipSpace() {
    while pos < bytes.count {
      switch bytes[pos] {
      case 0x20, 0x0A, 0x0D, 0x09: pos += 1
      default: return
      }
    }
  }

  func fail(_ m: String) -> JSONError { JSONError(message: m, offset: pos) }

  mutating func value(depth: Int) throws(JSONError) -> JSON {
    guard depth < JSON.maxDepth else { throw fail("nesting deeper than \(JSON.maxDepth)") }
    guard !atEnd else { throw fail("unexpected end of JSON") }
    switch cur {
    case UInt8(ascii: "{"):
      pos += 1
      var pairs: [(String, JSON)] = []
      skipSpace()
      if cur == UInt8(ascii: "}") { pos += 1; return .object(pairs) }
      // A repeated key is an error: readers disagree on which copy wins, and a file that
      // means different things to different tools is exactly what a hostile file wants.
      var keys = Set<String>()
      while true {
        skipSpace()
        guard cur == UInt8(ascii: "\"") else { throw fail("expected a string key") }
        let keyAt = pos
        let k = try string()
        guard keys.insert(k).inserted else { throw JSONError(message: "duplicate key \"\(k)\"", offset: keyAt) }
        skipSpace()
        guard cur == UInt8(ascii: ":") else { throw fail("expected ':' after key \"\(k)\"") }
        pos += 1
        skipSpace()
        pairs.append((k, try value(depth: depth + 1)))
        skipSpace()
        if cur == UInt8(ascii: ",") { pos += 1; continue }
        if cur == UInt8(ascii: "}") { pos += 1; return .object(pairs) }
        throw fail(atEnd ? "unexpected end of JSON" : "expected ',' or '}'")
      }
    case UInt8(ascii: "["):
      pos += 1
      var items: [JSON] = []
      skipSpace()
      if cur == UInt8(ascii: "]") { pos += 1; return .array(items) }
      while true {
        skipSpace()
        items.append(try value(depth: depth + 1))
        skipSpace()
        if cur == UInt8(ascii: ",") { pos += 1; continue }
        if cur == UInt8(ascii: "]") { pos += 1; return .array(items) }
        throw fail(atEnd ? "unexpected end of JSON" : "expected ',' or ']'")
      }
    case UInt8(ascii: "\""): return .string(try string())
    case UInt8(ascii: "t"): try literal("true"); return .bool(true)
    case UInt8(ascii: "f"): try literal("false"); return .bool(false)
    case UInt8(ascii: "n"): try literal("null"); return .null
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
    default: throw fail("unexpected character '\(Character(UnicodeScalar(cur)))'")
    }
  }

  mutating func literal(_ word: String) throws(JSONError) {
    for c in word.utf8 {
      guard cur == c else { throw fail("invalid literal") }
      pos += 1
    }
  }

  mutating func number() throws(JSONError) -> JSON {
    let start = pos
    var isInt = true
    if cur == UInt8(ascii: "-") { pos += 1 }
    guard !atEnd, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(cur) else {
      throw fail("invalid number")
    }
    while !atEnd, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(cur) { pos += 1 }
    if cur == UInt8(ascii: ".") {
      isInt = false
      pos += 1
      while !atEnd, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(cur) { pos += 1 }
    }
    if cur == UInt8(ascii: "e") || cur == UInt8(ascii: "E") {
      isInt = false
      pos += 1
      if cur == UInt8(ascii: "+") || cur == UInt8(ascii: "-") { pos += 1 }
      while !atEnd, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(cur) { pos += 1 }
    }
    let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
    if isInt, let i = Int(text) { return .int(i) }
    guard let d = Double(text) else { throw JSONError(message: "invalid number", offset: start) }
    return .double(d)
  }

  mutating func hex4() throws(JSONError) -> UInt32 {
    var v: UInt32 = 0
    for _ in 0..<4 {
      guard !atEnd else { throw fail("unexpected end of JSON") }
      let c = cur
      let d: UInt32
      switch c {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
      case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
      case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
      default: throw fail("invalid \\u escape")
      }
      v = v * 16 + d
      pos += 1
    }
    return v
  }

  mutating func string() throws(JSONError) -> String {
    let start = pos
    pos += 1  // opening quote
    var out = [UInt8]()
    while true {
      guard !atEnd else { throw JSONError(message: "unterminated string", offset: start) }
      let c = cur
      if c == UInt8(ascii: "\"") { pos += 1; break }
      if c < 0x20 { throw fail("control character in string") }
      if c == UInt8(ascii: "\\") {
        pos += 1
        guard !atEnd else { throw JSONError(message: "unterminated string", offset: start) }
        let e = cur
        pos += 1
        switch e {
        case UInt8(ascii: "\""): out.append(0x22)
        case UInt8(ascii: "\\"): out.append(0x5C)
        case UInt8(ascii: "/"): out.append(0x2F)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
          var scalar = try hex4()
          if (0xD800..<0xDC00).contains(scalar) {
            guard cur == UInt8(ascii: "\\"), pos + 1 < bytes.count, bytes[pos + 1] == UInt8(ascii: "u")
            else { throw fail("unpaired surrogate") }
            pos += 2
            let low = try hex4()
            guard (0xDC00..<0xE000).contains(low) else { throw fail("unpaired surrogate") }
            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
          } else if (0xDC00..<0xE000).contains(scalar) {
            throw fail("unpaired surrogate")
          }
          // safe: surrogates were excluded above, so the scalar is valid.
          out.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar)!)).utf8))
        default: throw fail("invalid escape")
        }
        continue
      }
      out.append(c)
      pos += 1
    }
    guard let s = String(validating: out, as: UTF8.self) else {
      throw JSONError(message: "string is not valid UTF-8", offset: start)
    }
    return s
  }
}
