import QoptIR

/// Why a pass plugin could not be loaded. Every case is detected before the plugin's passes
/// join the registry, so a failed load leaves the registry as it was and runs nothing.
///
/// Messages follow LLVM's `PassPlugin::Load` wording, naming the library path.
public enum PluginError: DiagnosticError, Equatable, Sendable {
  /// `dlopen` failed; `reason` is `dlerror()` verbatim.
  case cannotOpen(path: String, reason: String)
  /// The library has no `qoptGetPassPluginInfo` symbol: it is not a qopt plugin.
  case missingEntryPoint(path: String)
  /// The plugin was built against another `QOPT_PLUGIN_API_VERSION`.
  case apiVersionMismatch(path: String, expected: UInt32, found: UInt32)
  /// The plugin's `qopt_plugin_info` is smaller than this host's (a corrupt or foreign struct).
  case structSizeMismatch(path: String, expected: Int, found: Int)
  /// A pass the plugin registers has the name of a pass already registered (built-in, from
  /// an earlier plugin, or registered twice by this one).
  case duplicatePassName(path: String, name: String)
  /// An external kernel the plugin registers has a name another function already holds (from
  /// an earlier plugin, or registered twice by this one).
  case duplicateKernelName(path: String, name: String)
  /// The entry point returned no usable info, or `register_passes` failed or declared a
  /// malformed pass.
  case registrationFailed(path: String, reason: String)

  /// The library path given to `-load-pass-plugin`.
  public var path: String {
    switch self {
    case .cannotOpen(let p, _), .missingEntryPoint(let p), .apiVersionMismatch(let p, _, _),
      .structSizeMismatch(let p, _, _), .duplicatePassName(let p, _), .duplicateKernelName(let p, _),
      .registrationFailed(let p, _):
      p
    }
  }

  /// The message, lowercase, naming the library (LLVM's wording where it has one).
  public var message: String {
    switch self {
    case .cannotOpen(let p, let reason):
      "could not load plugin '\(p)': \(reason)"
    case .missingEntryPoint(let p):
      "plugin entry point 'qoptGetPassPluginInfo' not found in '\(p)'; is it a qopt pass plugin?"
    case .apiVersionMismatch(let p, let expected, let found):
      "wrong API version on plugin '\(p)': got version \(found), supported version is \(expected)"
        + (found < expected ? "; rebuild it against this qopt's qopt_plugin.h" : "")
        + (found == 1 ? " (version 2 registers external kernels with register_kernel)" : "")
    case .structSizeMismatch(let p, let expected, let found):
      "plugin '\(p)' returned a qopt_plugin_info of \(found) bytes; this host needs at least \(expected)"
    case .duplicatePassName(let p, let name):
      "plugin '\(p)' registers pass '\(name)', but a pass with that name is already registered"
    case .duplicateKernelName(let p, let name):
      "plugin '\(p)' registers kernel '\(name)', but a kernel with that name is already registered"
    case .registrationFailed(let p, let reason):
      "plugin '\(p)' failed to register its passes: \(reason)"
    }
  }

  /// One unlocated error: the library path is in the message.
  public var diagnostics: [Diagnostic] { [Diagnostic(.error, message)] }
}
