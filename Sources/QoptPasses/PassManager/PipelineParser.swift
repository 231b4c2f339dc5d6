import QoptIR

/// One pass in a parsed pipeline, with its options.
public struct PassInvocation {
  public let pass: Pass
  public let options: any PassOptions
  /// Column (1-based) of the pass name in the pipeline text.
  public let column: Int
}

/// A malformed `-passes=` pipeline, located by column in the pipeline text.
public struct PipelineError: DiagnosticError, Sendable {
  public var message: String
  public var column: Int

  public init(_ message: String, column: Int) {
    self.message = message
    self.column = column
  }

  public var diagnostics: [Diagnostic] {
    [Diagnostic(.error, message, at: SourceLocation(file: "-passes", line: 1, column: column))]
  }
}

/// Parses pipeline text as LLVM writes it: `rtn<bits=4;group-size=128>,verify`.
///
///     pipeline ::= element (',' element)*
///     element  ::= pass-name ('<' option (';' option)* '>')?
///     option   ::= key ('=' value)? | 'no-' key
public enum PipelineParser {
  public static func parse(_ text: String, registry: PassRegistry) throws(PipelineError) -> [PassInvocation] {
    let chars = Array(text)
    var i = 0
    var out: [PassInvocation] = []
    if chars.isEmpty { return [] }
    while true {
      let start = i
      while i < chars.count, chars[i] != ",", chars[i] != "<" { i += 1 }
      let name = String(chars[start..<i]).trimmingSpaces
      guard !name.isEmpty else { throw PipelineError("expected a pass name", column: start + 1) }
      guard let pass = registry.pass(named: name) else {
        var m = "unknown pass '\(name)'"
        if let s = closestMatch(to: name, in: registry.names) { m += "; did you mean '\(s)'?" }
        throw PipelineError(m, column: start + 1)
      }
      var items: [(key: String, value: String?, column: Int)] = []
      if i < chars.count, chars[i] == "<" {
        i += 1
        var depth = 0
        var itemStart = i
        var closed = false
        while i < chars.count {
          let ch = chars[i]
          if ch == "<" { depth += 1 }
          if ch == ">" && depth > 0 { depth -= 1; i += 1; continue }
          if (ch == ";" || ch == ">") && depth == 0 {
            let item = String(chars[itemStart..<i])
            if !item.trimmingSpaces.isEmpty {
              if let eq = item.firstIndex(of: "=") {
                items.append((String(item[..<eq]).trimmingSpaces, String(item[item.index(after: eq)...]).trimmingSpaces, itemStart + 1))
              } else {
                items.append((item.trimmingSpaces, nil, itemStart + 1))
              }
            }
            itemStart = i + 1
            if ch == ">" { closed = true; i += 1; break }
          }
          i += 1
        }
        guard closed else { throw PipelineError("missing '>' to close the options of '\(name)'", column: start + 1) }
      }
      out.append(PassInvocation(pass: pass, options: try pass.parseOptions(items), column: start + 1))
      if i >= chars.count { break }
      guard chars[i] == "," else { throw PipelineError("expected ',' between passes, found '\(chars[i])'", column: i + 1) }
      i += 1
      guard i < chars.count else { throw PipelineError("expected a pass name after ','", column: i + 1) }
    }
    return out
  }
}

extension String {
  var trimmingSpaces: String {
    var s = Substring(self)
    while s.first == " " { s = s.dropFirst() }
    while s.last == " " { s = s.dropLast() }
    return String(s)
  }
}
