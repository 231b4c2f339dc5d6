import QoptIR

/// Splits an input file at lines that are exactly `// -----`, padding each chunk with blank
/// lines so diagnostics keep the line numbers of the original file.
enum SplitInput {
  static func chunks(path: String) throws -> [String] {
    let bytes = try readFile(path)
    guard let text = String(validating: bytes, as: UTF8.self) else {
      throw StorageError(file: path, offset: nil, message: "file is not valid UTF-8")
    }
    return chunks(text)
  }

  static func chunks(_ text: String) -> [String] {
    var out: [String] = []
    var current: [Substring] = []
    var startLine = 0
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    for (i, line) in lines.enumerated() {
      if line.trimmingCharacters() == "// -----" {
        out.append(String(repeating: "\n", count: startLine) + current.joined(separator: "\n"))
        current = []
        startLine = i + 1
      } else {
        current.append(line)
      }
    }
    out.append(String(repeating: "\n", count: startLine) + current.joined(separator: "\n"))
    return out
  }
}

extension Substring {
  func trimmingCharacters() -> Substring {
    var s = self
    while s.first == " " || s.first == "\t" { s = s.dropFirst() }
    while s.last == " " || s.last == "\t" || s.last == "\r" { s = s.dropLast() }
    return s
  }
}
