import QoptIR

/// A model the backend cannot write, or a failure while writing it.
///
/// Located by the output path and, when one tensor is at fault, its name: rendered as
/// `out.gguf: error: tensor 'model.layers.0.mlp.up_proj.weight': group size 128 does not divide …`.
public struct BackendError: DiagnosticError, Hashable, Sendable {
  /// The output being written (file or directory).
  public var output: String
  /// The weight at fault, if any.
  public var tensor: String?
  public var message: String

  public init(output: String, tensor: String? = nil, _ message: String) {
    self.output = output
    self.tensor = tensor
    self.message = message
  }

  public var diagnostics: [Diagnostic] {
    let what = tensor.map { "tensor '\($0)': " } ?? ""
    return [Diagnostic(.error, what + message, at: SourceLocation(file: output, line: 0, column: 0))]
  }

  public var description: String {
    "\(output): error: " + (tensor.map { "tensor '\($0)': " } ?? "") + message
  }
}
