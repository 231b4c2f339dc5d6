/// A position-tracking reader over the UTF-8 bytes of an IR file.
struct Cursor {
  let bytes: [UInt8]
  let file: String
  var pos = 0
  var line = 1
  var lineStart = 0

  init(text: String, file: String) {
    self.bytes = Array(text.utf8)
    self.file = file
  }

  var atEnd: Bool { pos >= bytes.count }
  var peek: UInt8 { pos < bytes.count ? bytes[pos] : 0 }
  func peek(_ k: Int) -> UInt8 { pos + k < bytes.count ? bytes[pos + k] : 0 }

  var location: SourceLocation { SourceLocation(file: file, line: line, column: pos - lineStart + 1) }

  mutating func advance() {
    if bytes[pos] == 0x0A {
      line += 1
      lineStart = pos + 1
    }
    pos += 1
  }

  /// Skips white space and `//` comments.
  mutating func skipTrivia() {
    while !atEnd {
      let c = peek
      if c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D {
        advance()
      } else if c == UInt8(ascii: "/") && peek(1) == UInt8(ascii: "/") {
        while !atEnd && peek != 0x0A { advance() }
      } else {
        return
      }
    }
  }

  static func isIdentStart(_ c: UInt8) -> Bool {
    (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || c == UInt8(ascii: "_")
  }
  static func isIdentChar(_ c: UInt8) -> Bool {
    isIdentStart(c) || (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: ".") || c == UInt8(ascii: "$")
      || c == UInt8(ascii: "-")
  }
  static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

  /// A short rendering of what is at the cursor, for "found …" in errors.
  var foundDescription: String {
    if atEnd { return "end of file" }
    if peek == 0x0A || peek == 0x0D { return "end of line" }
    var end = pos
    if Cursor.isIdentChar(peek) {
      while end < bytes.count, Cursor.isIdentChar(bytes[end]), end - pos < 32 { end += 1 }
    } else {
      end = pos + 1
    }
    let s = String(decoding: bytes[pos..<end], as: UTF8.self)
    return "'\(s)'"
  }
}
