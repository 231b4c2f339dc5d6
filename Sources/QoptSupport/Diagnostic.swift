/// A position in a textual IR file or other input; `line` and `column` are 1-based.
///
/// Binary inputs (safetensors, GGUF) use `line == 0` and put the byte offset in `column`,
/// rendered as `file:@offset`.
public struct SourceLocation: Hashable, Sendable, CustomStringConvertible {
  public var file: String
  public var line: Int
  public var column: Int

  public init(file: String, line: Int, column: Int) {
    self.file = file
    self.line = line
    self.column = column
  }

  /// A location inside a binary file, given as a byte offset.
  public static func byteOffset(_ offset: Int, in file: String) -> SourceLocation {
    SourceLocation(file: file, line: 0, column: offset)
  }

  public var description: String {
    line == 0 ? "\(file):@\(column)" : "\(file):\(line):\(column)"
  }
}

/// One user-facing message with an optional location and trailing notes.
///
/// Rendered as LLVM does: `file:line:col: error: message`, lowercase, no trailing period.
public struct Diagnostic: Hashable, Sendable, CustomStringConvertible {
  public enum Severity: String, Sendable { case error, warning, note, remark }
  public var severity: Severity
  public var message: String
  public var location: SourceLocation?
  public var notes: [String]

  public init(
    _ severity: Severity, _ message: String, at location: SourceLocation? = nil, notes: [String] = []
  ) {
    self.severity = severity
    self.message = message
    self.location = location
    self.notes = notes
  }

  public var description: String {
    var s = location.map { "\($0): " } ?? ""
    s += "\(severity.rawValue): \(message)"
    for n in notes { s += "\nnote: \(n)" }
    return s
  }
}

/// An error that renders as one or more located diagnostics.
public protocol DiagnosticError: Error, CustomStringConvertible {
  var diagnostics: [Diagnostic] { get }
}

extension DiagnosticError {
  public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}
