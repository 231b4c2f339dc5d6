import QoptIR

/// `-verify-diagnostics`: every diagnostic the input produces must be announced by a
/// `// expected-error@+N {{text}}` comment (`@-N`, `@N` or no offset for the same line), and
/// every announced one must occur, as mlir-opt checks them. Diagnostics come from parsing,
/// verifying and then running the `-passes` pipeline on each chunk, so a pass's located
/// run-time errors can be checked the same way.
enum ExpectedDiagnosticsCheck {
  struct Expectation {
    var line: Int
    var text: String
    var commentLine: Int
    var seen = false
  }

  /// Checks the diagnostics of `path` (each `// -----` chunk when `split`); `process` runs the
  /// pipeline on a chunk that parsed and verified.
  static func run(path: String, split: Bool, process: (Module) throws -> Void) throws {
    let bytes = try readFile(path)
    guard let text = String(validating: bytes, as: UTF8.self) else {
      throw StorageError(file: path, offset: nil, message: "file is not valid UTF-8")
    }
    let chunks = split ? SplitInput.chunks(text) : [text]
    var actual: [Diagnostic] = []
    for chunk in chunks {
      do {
        let m = try ModuleIO.load(text: chunk, file: path)
        try m.verify()
        try process(m)
      } catch let e as any DiagnosticError {
        actual += e.diagnostics
      }
    }
    var expected = parseExpectations(text)
    var problems: [Diagnostic] = []
    for d in actual where d.severity == .error {
      let line = d.location?.line ?? -1
      if let i = expected.firstIndex(where: { !$0.seen && $0.line == line && d.message.contains($0.text) }) {
        expected[i].seen = true
      } else {
        problems.append(Diagnostic(.error, "unexpected error: \(d.message)", at: d.location))
      }
    }
    for e in expected where !e.seen {
      problems.append(Diagnostic(.error, "expected error \"\(e.text)\" on line \(e.line) was not produced", at: SourceLocation(file: path, line: e.commentLine, column: 1)))
    }
    if !problems.isEmpty { throw VerifyError(problems) }
  }

  static func parseExpectations(_ text: String) -> [Expectation] {
    var out: [Expectation] = []
    for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      guard let r = line.firstRange(of: "expected-error") else { continue }
      var rest = line[r.upperBound...]
      var target = i + 1
      if rest.first == "@" {
        rest = rest.dropFirst()
        var num = ""
        while let c = rest.first, c == "+" || c == "-" || c.isNumber { num.append(c); rest = rest.dropFirst() }
        if num.hasPrefix("+") || num.hasPrefix("-") { target += Int(num) ?? 0 } else { target = Int(num) ?? target }
      }
      guard let open = rest.firstRange(of: "{{"), let close = rest[open.upperBound...].firstRange(of: "}}") else { continue }
      out.append(Expectation(line: target, text: String(rest[open.upperBound..<close.lowerBound]), commentLine: i + 1))
    }
    return out
  }
}
