import QoptIR

/// A checkpoint that cannot be read or lowered, located by file and byte offset or by the
/// key (config field, tensor name, metadata key) that is wrong.
///
/// Renders as `file:@offset: error: message` or `file: error: key 'k': message`.
public struct FrontendError: DiagnosticError, Hashable, Sendable {
  public enum Place: Hashable, Sendable {
    case offset(Int)
    case key(String)
    case none
  }
  public var file: String
  public var place: Place
  public var message: String

  public init(file: String, offset: Int, _ message: String) {
    self.init(file: file, place: .offset(offset), message)
  }

  public init(file: String, key: String, _ message: String) {
    self.init(file: file, place: .key(key), message)
  }

  public init(file: String, place: Place, _ message: String) {
    self.file = file
    self.place = place
    self.message = message
  }

  /// Wraps a storage error (safetensors, JSON files) so callers see one error type.
  public init(_ e: StorageError) {
    self.init(file: e.file, place: e.offset.map { .offset($0) } ?? .none, e.message)
  }

  public var diagnostics: [Diagnostic] {
    switch place {
    case .offset(let o): [Diagnostic(.error, message, at: .byteOffset(o, in: file))]
    case .key(let k): [Diagnostic(.error, "key '\(k)': \(message)", at: SourceLocation(file: file, line: 0, column: 0))]
    case .none: [Diagnostic(.error, message, at: SourceLocation(file: file, line: 0, column: 0))]
    }
  }

  public var description: String {
    switch place {
    case .offset(let o): "\(file):@\(o): error: \(message)"
    case .key(let k): "\(file): error: key '\(k)': \(message)"
    case .none: "\(file): error: \(message)"
    }
  }
}
