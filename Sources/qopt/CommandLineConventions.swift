import ArgumentParser
import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// The conventions every qopt command shares, decided before and after argument parsing:
/// `--version`, usage on a bare `qopt` typed at a terminal, and one error style —
/// `error: message` (`file:line:col: error: message` when located), exit 1 for errors in
/// the input or a pass, exit 2 for usage errors (with the usage line).
enum CommandLineConventions {
  static let versionLine = "qopt version \(QoptVersion.current)"

  /// What to do before parsing `args` (the arguments after the program name).
  enum Early: Equatable { case version, usage, parse }

  static func early(_ args: [String], stdinIsTerminal: Bool) -> Early {
    if args.count == 1 && (args[0] == "--version" || args[0] == "-version") { return .version }
    // `qopt` alone would read IR from standard input; at a terminal that is a silent hang.
    if args.isEmpty && stdinIsTerminal { return .usage }
    return .parse
  }

  /// The message of a usage error in the house style: `error: …` with the usage line, the
  /// unknown option named as typed (ArgumentParser reports `-bogus` as its first letter).
  static func usageError(_ fullMessage: String, args: [String]) -> String {
    var lines = fullMessage.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    guard var first = lines.first else { return fullMessage }
    if first.hasPrefix("Error: ") { first.removeFirst("Error: ".count) }
    first = wholeOptionName(in: first, args: args)
    if let c = first.first, c.isUppercase, first.dropFirst().first?.isLowercase == true {
      first = c.lowercased() + first.dropFirst()
    }
    lines[0] = "error: " + first
    // The default command is `qopt …`, not `qopt opt …`.
    return lines.joined(separator: "\n").replacingFirst("'qopt opt ", with: "'qopt ")
  }

  /// `Unknown option '-b'` → `Unknown option '-bogus'` when `-bogus` was typed.
  static func wholeOptionName(in message: String, args: [String]) -> String {
    let prefix = "Unknown option '-"
    guard message.hasPrefix(prefix), message.hasSuffix("'") else { return message }
    let letter = message.dropFirst(prefix.count).dropLast()
    guard letter.count == 1 else { return message }
    for a in args where a.hasPrefix("-" + letter) && a.count > 2 && !a.hasPrefix("--") {
      let name = a.split(separator: "=", maxSplits: 1).first.map(String.init) ?? a
      return "Unknown option '\(name)'"
    }
    return message
  }

  /// A located error as text, with the offending source line and a caret under its column
  /// (as `-passes` errors show the pipeline), when the location is a line of a readable file.
  static func render(_ error: any DiagnosticError) -> String {
    let text = error.description
    guard !(error is PipelineDiagnostic),
      let loc = error.diagnostics.first(where: { $0.location.map { $0.line > 0 } ?? false })?.location,
      let line = sourceLine(loc.file, loc.line)
    else { return text }
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let caret = String(repeating: " ", count: max(0, min(loc.column - 1, line.count))) + "^"
    lines.insert(contentsOf: ["  " + line, "  " + caret], at: 1)
    return lines.joined(separator: "\n")
  }

  /// Line `n` (1-based) of a text file, tabs as spaces so the caret lines up; nil when the file
  /// cannot be read, the line does not exist or is too long to be worth showing.
  static func sourceLine(_ file: String, _ n: Int) -> String? {
    guard file != "<stdin>", let bytes = try? readFile(file) else { return nil }
    var line = 1
    var start = 0
    for (i, b) in bytes.enumerated() where b == 0x0A {
      if line == n { return clean(bytes[start..<i]) }
      line += 1
      start = i + 1
    }
    return line == n && start < bytes.count ? clean(bytes[start...]) : nil
  }

  private static func clean(_ bytes: ArraySlice<UInt8>) -> String? {
    guard bytes.count <= 300, let s = String(validating: bytes, as: UTF8.self) else { return nil }
    var out = s.replacingTabs()
    while out.last == "\r" { out.removeLast() }
    return out
  }
}

extension String {
  fileprivate func replacingTabs() -> String { String(map { $0 == "\t" ? " " : $0 }) }

  fileprivate func replacingFirst(_ a: String, with b: String) -> String {
    guard let r = firstRange(of: a) else { return self }
    return String(self[..<r.lowerBound]) + b + String(self[r.upperBound...])
  }
}
