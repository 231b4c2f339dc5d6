import CQoptPlugin
import QoptExternKernels
import QoptPasses

#if canImport(Glibc)
  import Glibc
#endif

/// A plugin that loaded: what it called itself and the passes and kernels it added.
public struct LoadedPlugin: Sendable, Equatable {
  /// The path it was loaded from.
  public let path: String
  /// The plugin's own name and version (`qopt_plugin_info`).
  public let name: String
  public let version: String
  /// The passes it registered, in registration order.
  public let passes: [String]
  /// The external kernels it registered, in registration order.
  public let kernels: [String]
}

/// Loads pass plugins (`-load-pass-plugin=PATH`) into a `PassRegistry`, and their external
/// kernels into the `ExternKernelRegistry`.
///
/// The order is LLVM's `PassPlugin::Load` with the checks a C ABI needs: `dlopen` with
/// `RTLD_NOW | RTLD_LOCAL` (missing symbols fail now, plugins cannot interpose on each other),
/// `dlsym("qoptGetPassPluginInfo")`, call it, check `api_version` and `struct_size` before any
/// other field is read or any plugin callback runs, then `register_passes`. The library is
/// never closed: its function pointers stay registered for the life of the process.
public enum PluginLoader {
  /// Loads the plugin at `path` and registers its passes in `registry` and its kernels in the
  /// `ExternKernelRegistry`; on any error both are unchanged.
  @discardableResult
  public static func load(_ path: String, into registry: PassRegistry) throws(PluginError) -> LoadedPlugin {
    guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
      let reason = dlerror().map { String(cString: $0) } ?? "unknown dlopen error"
      throw .cannotOpen(path: path, reason: reason)
    }
    guard let sym = dlsym(handle, "qoptGetPassPluginInfo") else { throw .missingEntryPoint(path: path) }
    let entry = unsafeBitCast(sym, to: qopt_get_plugin_info_fn.self)
    guard let infoPtr = entry() else {
      throw .registrationFailed(path: path, reason: "qoptGetPassPluginInfo returned NULL")
    }
    // The first two fields are read on their own: a foreign struct may be shorter than ours.
    let raw = UnsafeRawPointer(infoPtr)
    let version = raw.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
    let size = raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
    guard version == QOPT_PLUGIN_API_VERSION else {
      throw .apiVersionMismatch(path: path, expected: QOPT_PLUGIN_API_VERSION, found: version)
    }
    let needed = MemoryLayout<qopt_plugin_info>.stride
    guard Int(size) >= needed else { throw .structSizeMismatch(path: path, expected: needed, found: Int(size)) }
    let info = infoPtr.pointee
    guard let register = info.register_passes else {
      throw .registrationFailed(path: path, reason: "the plugin info has no register_passes callback")
    }
    let name = info.name.map { String(cString: $0) } ?? path
    let registrar = PluginRegistrar(path: path, taken: Set(registry.names))
    let status = registrar.withHandle { register(UnsafePointer(hostAPI), $0) }
    if let failure = registrar.failure { throw failure }
    guard status == QOPT_OK else {
      throw .registrationFailed(path: path, reason: "register_passes returned status \(status)")
    }
    if let name = ExternKernelRegistry.clash(in: registrar.kernels) {
      throw .duplicateKernelName(path: path, name: name)
    }
    for pass in registrar.passes {
      do { try registry.register(pass) } catch { throw .duplicatePassName(path: path, name: pass.name) }
    }
    ExternKernelRegistry.register(registrar.kernels)
    return LoadedPlugin(
      path: path, name: name, version: info.version.map { String(cString: $0) } ?? "",
      passes: registrar.passes.map(\.name), kernels: registrar.kernels.map(\.name))
  }

  /// Loads every plugin in `paths` in order (the CLI's repeatable `-load-pass-plugin`); the
  /// first failure stops and is thrown.
  @discardableResult
  public static func loadAll(_ paths: [String], into registry: PassRegistry) throws(PluginError) -> [LoadedPlugin] {
    var out: [LoadedPlugin] = []
    for p in paths { out.append(try load(p, into: registry)) }
    return out
  }
}
