#if canImport(Glibc)
  import Glibc
#endif

/// One `IR/**/*.ir` regression file: its path and `// RUN:` lines.
public struct LitFile: Sendable, CustomStringConvertible {
  public let path: String
  public let runLines: [String]
  public var description: String { path }
}

/// The outcome of running one lit file.
public struct LitResult: Sendable {
  public var failures: [String]
  public var report: String { failures.joined(separator: "\n\n") }
}

/// Discovers lit files and runs their RUN lines the way LLVM's lit does: substitutions, then
/// the command through `bash -o pipefail`, with a trailing `| filecheck …` run in-process.
///
/// Substitutions: `%s` the file, `%S` its directory, `%t` a per-file temporary path, `%qopt`
/// the built qopt binary, `%plugin(Name)` the built plugin library `libName.so`, `%shared` the
/// shared data folder beside the checkout. `not CMD` succeeds when CMD exits 1…127 (a crash
/// does not count as an expected failure).
public struct LitRunner: Sendable {
  public var root: String
  public var binDir: String

  public init(root: String, binDir: String) {
    self.root = root
    self.binDir = binDir
  }

  /// Every `.ir` file with at least one RUN line under `dir`, sorted by path.
  public static func discover(under dir: String) -> [LitFile] {
    var out: [LitFile] = []
    walk(dir) { path in
      guard path.hasSuffix(".ir"), let text = try? String(decoding: readAll(path), as: UTF8.self) else { return }
      let runs = runLines(text)
      if !runs.isEmpty { out.append(LitFile(path: path, runLines: runs)) }
    }
    return out.sorted { $0.path < $1.path }
  }

  static func runLines(_ text: String) -> [String] {
    var out: [String] = []
    var pending = ""
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
      guard let r = line.firstRange(of: "RUN:") else { continue }
      var cmd = String(line[r.upperBound...]).trimmingTrailingSpace
      if cmd.hasSuffix("\\") {
        cmd.removeLast()
        pending += cmd + " "
        continue
      }
      out.append((pending + cmd).drop { $0 == " " }.description)
      pending = ""
    }
    return out
  }

  public func run(_ file: LitFile) -> LitResult {
    var failures: [String] = []
    let text = String(decoding: (try? LitRunner.readAll(file.path)) ?? [], as: UTF8.self)
    let dir = file.path.split(separator: "/").dropLast().joined(separator: "/")
    // A private scratch directory per file (`%t` lies in it), removed however the file ends.
    let tmpDir = TestTemporary.makeDirectory("lit")
    defer { TestTemporary.remove(tmpDir) }
    for run in file.runLines {
      var cmd = substitute(run, file: file.path, dir: (file.path.hasPrefix("/") ? "/" : "") + dir, tmp: tmpDir + "/t")
      var checkArgs: [String]?
      if let r = cmd.range(ofLast: "| filecheck") {
        checkArgs = cmd[r.upperBound...].split(separator: " ").map(String.init)
        cmd = String(cmd[..<r.lowerBound])
      }
      let script = "not() { \"$@\"; rc=$?; [ $rc -ge 1 ] && [ $rc -le 127 ]; }\nset -o pipefail\n" + cmd
      let (status, output) = LitRunner.shell(script)
      if let args = checkArgs {
        var prefix = "CHECK"
        var checkFile = text
        for a in args {
          if a.hasPrefix("--check-prefix=") { prefix = String(a.dropFirst(15)) }
          else if a.hasPrefix("-check-prefix=") { prefix = String(a.dropFirst(14)) }
          else if !a.isEmpty, a != file.path, let t = try? LitRunner.readAll(a) { checkFile = String(decoding: t, as: UTF8.self) }
        }
        if status != 0 {
          failures.append("RUN: \(run)\ncommand exited with status \(status)\noutput:\n\(output)")
          continue
        }
        let f = FileCheck(checkFile: checkFile, prefix: prefix).check(output)
        if !f.isEmpty { failures.append("RUN: \(run)\n" + f.joined(separator: "\n") + "\noutput:\n\(output)") }
      } else if status != 0 {
        failures.append("RUN: \(run)\ncommand exited with status \(status)\noutput:\n\(output)")
      }
    }
    return LitResult(failures: failures)
  }

  func substitute(_ s: String, file: String, dir: String, tmp: String) -> String {
    var out = s
    while let r = out.firstRange(of: "%plugin("), let close = out[r.upperBound...].firstIndex(of: ")") {
      let name = out[r.upperBound..<close]
      out.replaceSubrange(r.lowerBound...close, with: "\(binDir)/lib\(name).so")
    }
    let shared = root.split(separator: "/").dropLast().joined(separator: "/")
    return out.replacing("%qopt", with: "\(binDir)/qopt")
      .replacing("%shared", with: "/\(shared)/shared")
      .replacing("%s", with: file).replacing("%S", with: dir).replacing("%t", with: tmp)
  }

  /// Runs `script` with bash; returns the exit status and stdout (stderr only where the
  /// script redirects it).
  static func shell(_ script: String) -> (Int32, String) {
    let path = "\(TestTemporary.root)/qopt-lit-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).sh"
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    _ = Array(script.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
    defer { unlink(path) }
    guard let p = popen("bash '\(path)'", "r") else { return (-1, "popen failed") }
    let bytes = readToEnd(p)
    let st = pclose(p)
    let code = (st & 0x7F) == 0 ? (st >> 8) & 0xFF : 128 + (st & 0x7F)
    return (code, String(decoding: bytes, as: UTF8.self))
  }

  static func readAll(_ path: String) throws -> [UInt8] {
    guard let f = fopen(path, "rb") else { throw LitError.cannotRead(path) }
    defer { fclose(f) }
    return readToEnd(f)
  }

  static func walk(_ dir: String, _ visit: (String) -> Void) {
    guard let d = opendir(dir) else { return }
    defer { closedir(d) }
    while let e = readdir(d) {
      let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
      if name == "." || name == ".." { continue }
      let path = dir + "/" + name
      var st = stat()
      guard stat(path, &st) == 0 else { continue }
      if (st.st_mode & S_IFMT) == S_IFDIR { walk(path, visit) } else { visit(path) }
    }
  }
}

enum LitError: Error { case cannotRead(String) }

extension String {
  var replacingSlashes: String { replacing("/", with: "_") }
  func range(ofLast needle: String) -> Range<String.Index>? {
    var last: Range<String.Index>?
    var from = startIndex
    while let r = self[from...].firstRange(of: needle) {
      last = r
      from = r.upperBound
    }
    return last
  }
}

/// Locations of the build products and the repository, for tests that run the CLI.
public enum TestPaths {
  /// The directory holding the built `qopt` (the test binary's own directory).
  public static var binDir: String {
    if let env = getenv("QOPT_BIN_DIR") { return String(cString: env) }
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    let exe = n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
    var parts = exe.split(separator: "/", omittingEmptySubsequences: false)
    // .build/<triple>/<config>/qoptPackageTests.xctest
    while let last = parts.last, !last.hasSuffix(".xctest") && parts.count > 1 { parts.removeLast() }
    parts.removeLast()
    return parts.joined(separator: "/")
  }

  /// The repository root: the nearest directory above the build directory with Package.swift.
  public static var repoRoot: String {
    var parts = binDir.split(separator: "/", omittingEmptySubsequences: false)
    while !parts.isEmpty {
      let candidate = parts.joined(separator: "/")
      if access(candidate + "/Package.swift", F_OK) == 0 { return candidate }
      parts.removeLast()
    }
    return "."
  }

  /// `../shared` beside the checkout.
  public static var shared: String { repoRoot + "/../shared" }
}
