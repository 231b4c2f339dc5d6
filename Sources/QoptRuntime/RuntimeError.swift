import QoptIR

/// An op the runtime cannot execute, or inputs it rejects, located at the op.
public struct RuntimeError: DiagnosticError, Sendable {
  public var message: String
  public var location: SourceLocation?

  public init(_ message: String, at op: Op? = nil) {
    self.location = op?.location
    self.message = op.map { $0.location == nil ? "\($0.path): \(message)" : message } ?? message
  }

  public var diagnostics: [Diagnostic] { [Diagnostic(.error, message, at: location)] }
}
