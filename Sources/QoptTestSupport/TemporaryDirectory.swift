import QoptSupport
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Scratch space for tests. Everything a test writes goes under `$TMPDIR` (as `mktemp`,
/// Python's `tempfile` and Foundation honour it; `/tmp` when unset) in a directory of its
/// own, and is removed when the test ends, passed or failed, so a run leaves nothing behind
/// (`scripts/test` runs the suite with a fresh `TMPDIR` and checks that it ends empty).
public enum TestTemporary {
  /// `$TMPDIR` without a trailing slash, or `/tmp`.
  public static var root: String {
    guard let env = getenv("TMPDIR"), env.pointee != 0 else { return "/tmp" }
    var s = String(cString: env)
    while s.count > 1 && s.hasSuffix("/") { s.removeLast() }
    return s
  }

  /// A new, private directory `ROOT/qopt-TAG-XXXXXX` (mkdtemp). Remove it with `remove`, or
  /// use `withDirectory`, which does.
  public static func makeDirectory(_ tag: String) -> String {
    var template = Array("\(root)/qopt-\(tag)-XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }  // safe: non-empty buffer
    guard let made else { fatalError("cannot create a temporary directory under \(root): \(String(cString: strerror(errno)))") }
    return String(cString: made)
  }

  /// A new directory from `makeDirectory(tag)` for a fixture several tests share; it is
  /// removed when the test process exits (normally, failed tests included).
  public static func makeSharedDirectory(_ tag: String) -> String {
    let dir = makeDirectory(tag)
    atExit.withLock { list in
      if list.isEmpty { atexit { for d in TestTemporary.atExit.withLock({ $0 }) { TestTemporary.remove(d) } } }
      list.append(dir)
    }
    return dir
  }

  static let atExit = Mutex<[String]>([])

  /// Runs `body` with a new directory from `makeDirectory(tag)` and removes the directory
  /// afterwards, also when `body` throws.
  public static func withDirectory<T>(_ tag: String, _ body: (String) throws -> T) rethrows -> T {
    let dir = makeDirectory(tag)
    defer { remove(dir) }
    return try body(dir)
  }

  /// Removes `path`: a file, a symbolic link (not what it points to) or a directory tree.
  public static func remove(_ path: String) { removeTree(path) }

}
