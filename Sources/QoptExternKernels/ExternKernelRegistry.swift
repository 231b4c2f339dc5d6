import Synchronization

/// The external kernels `qopt.extern` ops may call: exactly the functions that plugins
/// loaded with `-load-pass-plugin` registered by name (`host->register_kernel`).
///
/// Why a registry and not `dlsym`: a model file is untrusted input. Resolving an op's
/// `symbol` over the process let an `.ir` call any exported function (libc's `system`
/// included) with bytes it chose; a name table filled only by trusted plugin code gives the
/// file nothing to reach but those kernels, each called with the arity it was registered with.
///
/// Process-wide because plugin libraries are never unloaded: an entry stays valid for the
/// life of the process, and the table only grows.
public enum ExternKernelRegistry {
  /// One registered kernel.
  public struct Entry: Sendable, Equatable {
    /// The function's address (a C function taking `operandCount + 1` tensor triples).
    public let address: UInt
    /// The number of tensor operands it takes.
    public let operandCount: Int
    /// The plugin that registered it.
    public let plugin: String
    public init(address: UInt, operandCount: Int, plugin: String) {
      self.address = address
      self.operandCount = operandCount
      self.plugin = plugin
    }
  }

  /// Most tensor operands a kernel may take (libffi argument lists stay small).
  public static let maxOperands = 16

  private static let table = Mutex<[String: Entry]>([:])

  /// Whether `name` is acceptable as a kernel name: letters, digits, `_` and `.`, which an
  /// IR string attribute carries without escapes.
  public static func isValidName(_ name: String) -> Bool {
    !name.isEmpty && name.utf8.allSatisfy { c in
      (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2E
    }
  }

  /// The name among `kernels` that another function already holds, if any. Registering the
  /// same function under the same name again (a plugin loaded into a second pass registry)
  /// is not a clash.
  public static func clash(in kernels: [(name: String, entry: Entry)]) -> String? {
    table.withLock { t in
      kernels.first { k in t[k.name].map { $0.address != k.entry.address || $0.operandCount != k.entry.operandCount } ?? false }?.name
    }
  }

  /// Adds `kernels` (checked with `clash(in:)` first); existing identical entries are kept.
  public static func register(_ kernels: [(name: String, entry: Entry)]) {
    table.withLock { t in
      for k in kernels where t[k.name] == nil { t[k.name] = k.entry }
    }
  }

  /// The kernel registered as `name`.
  public static func lookup(_ name: String) -> Entry? { table.withLock { $0[name] } }

  /// Every registered name, sorted (for error notes).
  public static var names: [String] { table.withLock { $0.keys.sorted() } }
}
