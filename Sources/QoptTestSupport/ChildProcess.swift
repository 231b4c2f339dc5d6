#if canImport(Glibc)
  import Glibc
#endif

/// A child process started with `posix_spawn` (no shell), its output going to files, reaped
/// with `wait4` so the test also gets the child's resource usage (peak RSS) and can tell an
/// exit status from a signal. Tests that kill `qopt` mid-write or bound its memory use it.
public final class ChildProcess {
  /// How the child ended.
  public enum Termination: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)
    public var description: String {
      switch self {
      case .exited(let c): "exit \(c)"
      case .signaled(let s): "signal \(s)"
      }
    }
  }

  public let pid: pid_t
  private let outPath: String
  private let errPath: String

  /// Starts `argv[0]` (an absolute path) with `argv`; stdin is /dev/null.
  public init(_ argv: [String], environment: [String]? = nil) throws {
    let tag = "\(TestTemporary.root)/qopt-child-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    outPath = tag + ".out"
    errPath = tag + ".err"
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    let env = environment ?? Self.currentEnvironment()
    var cArgs = argv.map { strdup($0) } + [nil]
    var cEnv = env.map { strdup($0) } + [nil]
    defer {
      for p in cArgs { free(p) }
      for p in cEnv { free(p) }
    }
    var child: pid_t = 0
    let rc = posix_spawn(&child, argv[0], &actions, nil, &cArgs, &cEnv)
    guard rc == 0 else { throw ChildProcessError(message: "cannot start \(argv[0]): \(String(cString: strerror(rc)))") }
    pid = child
  }

  /// The output files go with the object, also when nobody read them.
  deinit {
    unlink(outPath)
    unlink(errPath)
  }

  /// Waits for the child; returns how it ended and its peak RSS in kilobytes (`ru_maxrss`).
  public func wait() -> (termination: Termination, maxRSSKilobytes: Int) {
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
    let t: Termination = (status & 0x7F) == 0 ? .exited((status >> 8) & 0xFF) : .signaled(status & 0x7F)
    return (t, Int(usage.ru_maxrss))
  }

  /// Sends `signal` to the child.
  public func kill(_ signal: Int32) { _ = Glibc.kill(pid, signal) }

  /// What the child wrote to stdout / stderr (read after `wait`); the files are then deleted.
  public func output() -> (stdout: String, stderr: String) {
    defer {
      unlink(outPath)
      unlink(errPath)
    }
    return (Self.read(outPath), Self.read(errPath))
  }

  /// Runs `argv` to completion.
  public static func run(_ argv: [String]) throws -> (termination: Termination, stdout: String, stderr: String, maxRSSKilobytes: Int) {
    let c = try ChildProcess(argv)
    let (t, rss) = c.wait()
    let (o, e) = c.output()
    return (t, o, e, rss)
  }

  static func read(_ path: String) -> String { readTextFile(path) }

  static func currentEnvironment() -> [String] {
    var out: [String] = []
    var p = environ
    while let s = p.pointee {
      out.append(String(cString: s))
      p += 1
    }
    return out
  }
}

public struct ChildProcessError: Error, CustomStringConvertible {
  public var message: String
  public var description: String { message }
}

/// Everything left in `f` (a file or a pipe), read to its end.
public func readToEnd(_ f: UnsafeMutablePointer<FILE>) -> [UInt8] {
  var bytes: [UInt8] = []
  var buf = [UInt8](repeating: 0, count: 65536)
  while true {
    let n = fread(&buf, 1, buf.count, f)
    if n <= 0 { break }
    bytes += buf[0..<n]
  }
  return bytes
}

/// A file's text ("" when it cannot be opened).
public func readTextFile(_ path: String) -> String {
  guard let f = fopen(path, "rb") else { return "" }
  defer { fclose(f) }
  return String(decoding: readToEnd(f), as: UTF8.self)
}
