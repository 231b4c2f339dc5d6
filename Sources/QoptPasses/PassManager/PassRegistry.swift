import QoptIR

/// Every pass the pipeline parser knows: the built-ins (`PassRegistry+Builtin.swift`) and
/// whatever plugins register. Names are unique.
public final class PassRegistry {
  public private(set) var passes: [Pass] = []

  public init() {}

  /// Adds a pass; a name already taken is an error.
  public func register(_ pass: Pass) throws(RegistryError) {
    if passes.contains(where: { $0.name == pass.name }) { throw RegistryError(name: pass.name) }
    passes.append(pass)
  }

  public func pass(named name: String) -> Pass? { passes.first { $0.name == name } }

  public var names: [String] { passes.map(\.name) }
}

/// A pass name registered twice.
public struct RegistryError: DiagnosticError, Sendable {
  public var name: String
  public var diagnostics: [Diagnostic] {
    [Diagnostic(.error, "a pass named '\(name)' is already registered")]
  }
}
