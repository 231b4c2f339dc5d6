import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The shared libraries external kernels are looked up in: every loaded pass plugin (added
/// by the plugin loader) and every library an op names in its `library` attribute.
///
/// Libraries are never closed (a kernel pointer must outlive every call), so the table only
/// grows; it is process-wide because `dlopen` handles are.
public enum ExternSymbols {
  private static let libraries = Mutex<[(handle: UInt, path: String)]>([])

  /// Makes `library`'s symbols visible to external-kernel ops.
  public static func add(library: UnsafeMutableRawPointer, path: String) {
    let h = UInt(bitPattern: library)
    libraries.withLock { list in
      if !list.contains(where: { $0.handle == h }) { list.append((h, path)) }
    }
  }

  /// Opens `path` (never closed) and adds it; returns `dlerror()` text when it cannot.
  public static func open(_ path: String) -> String? {
    guard let h = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
      return dlerror().map { String(cString: $0) } ?? "cannot open '\(path)'"
    }
    add(library: h, path: path)
    return nil
  }

  /// The address of `symbol` and the library it came from: the libraries added so far, in
  /// order, then the process's global symbols.
  public static func lookup(_ symbol: String) -> (address: UnsafeMutableRawPointer, library: String)? {
    let list = libraries.withLock { $0 }
    for (h, path) in list {
      if let p = dlsym(UnsafeMutableRawPointer(bitPattern: h), symbol) { return (p, path) }
    }
    if let p = dlsym(UnsafeMutableRawPointer(bitPattern: 0), symbol) { return (p, "<process>") }
    return nil
  }

  /// The paths searched, for error notes.
  public static var paths: [String] { libraries.withLock { $0.map(\.path) } }
}
