/// Every problem the verifier found, each located at its op (file:line:col when parsed).
public struct VerifyError: DiagnosticError, Sendable {
  public var diagnostics: [Diagnostic]
  public init(_ diagnostics: [Diagnostic]) { self.diagnostics = diagnostics }
}
