/// Thrown by `Parser`; rendered as `file:line:col: error: message`.
public struct ParseError: DiagnosticError, Hashable, Sendable {
  public enum Reason: Hashable, Sendable {
    case expected(String, found: String)
    case undefinedValue(String)
    case usedBeforeDefinition(String, definedAt: SourceLocation)
    case redefinedValue(String, previous: SourceLocation)
    case unknownType(String)
    case invalidNumber(String)
    case invalidString(String)
    case typeMismatch(String)
    case duplicate(String)
    case unexpectedEndOfFile(expected: String)
  }
  public var reason: Reason
  public var location: SourceLocation

  public init(_ reason: Reason, at location: SourceLocation) {
    self.reason = reason
    self.location = location
  }

  public var message: String {
    switch reason {
    case .expected(let what, let found): "expected \(what), found \(found)"
    case .undefinedValue(let n): "use of undefined value '%\(n)'"
    case .usedBeforeDefinition(let n, let at): "value '%\(n)' is used before its definition at line \(at.line)"
    case .redefinedValue(let n, let prev): "redefinition of value '%\(n)' (first defined at line \(prev.line))"
    case .unknownType(let t): "unknown type '\(t)'"
    case .invalidNumber(let m): "invalid number: \(m)"
    case .invalidString(let m): "invalid string: \(m)"
    case .typeMismatch(let m): m
    case .duplicate(let m): m
    case .unexpectedEndOfFile(let what): "unexpected end of file, expected \(what)"
    }
  }

  public var diagnostics: [Diagnostic] { [Diagnostic(.error, message, at: location)] }
}
