#if canImport(Glibc)
  import Glibc
#endif

/// The Python the GGUF cross-checks run: it must import `gguf` and `numpy` (the reference
/// implementation the checks compare against). Tests never install into the system Python:
/// when `python3` lacks the packages, they go into a virtual environment under the build
/// directory (`.build/venv`, created with `python3 -m venv`); when that fails too (no network,
/// no venv module) the tests that need them are skipped with a message saying why.
public enum TestPython {
  /// The packages the cross-checks import.
  public static let packages = ["gguf", "numpy"]

  /// An interpreter path that imports `packages`, or nil.
  public static let withGGUF: String? = find()

  static func imports(_ python: String) -> Bool {
    let check = "import " + packages.joined(separator: ", ")
    guard let r = try? ChildProcess.run(["/usr/bin/env", python, "-c", check]) else { return false }
    return r.termination == .exited(0)
  }

  static func find() -> String? {
    if imports("python3") { return "python3" }
    let venv = TestPaths.repoRoot + "/.build/venv"
    let python = venv + "/bin/python"
    if access(python, X_OK) == 0 && imports(python) { return python }
    if access(python, X_OK) != 0 {
      guard let r = try? ChildProcess.run(["/usr/bin/env", "python3", "-m", "venv", venv]), r.termination == .exited(0) else {
        return nil
      }
    }
    guard let r = try? ChildProcess.run([python, "-m", "pip", "install", "--quiet"] + packages), r.termination == .exited(0) else {
      return nil
    }
    return imports(python) ? python : nil
  }
}
