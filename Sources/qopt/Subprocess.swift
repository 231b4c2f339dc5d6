import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// A program `qopt slurm` runs (`sbatch`, `scontrol`): found on `PATH`, started without a
/// shell, its standard output and error read together through one pipe.
enum Subprocess {
  /// The absolute path of `name` on `PATH`, or nil.
  static func find(_ name: String) -> String? {
    let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
    for dir in path.split(separator: ":") where !dir.isEmpty {
      let candidate = "\(dir)/\(name)"
      if access(candidate, X_OK) == 0 && !isDirectory(candidate) { return candidate }
    }
    return nil
  }

  /// Runs `argv` (argv[0] an absolute path) to completion: exit status (128+signal when
  /// killed) and everything it printed.
  static func run(_ argv: [String]) throws -> (status: Int32, output: String) {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { throw WorkError("cannot create a pipe to run \(argv[0])") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
    posix_spawn_file_actions_addclose(&actions, fds[0])
    var cArgs = argv.map { strdup($0) } + [nil]
    defer { for p in cArgs { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &actions, nil, &cArgs, environ)
    close(fds[1])
    guard rc == 0 else {
      close(fds[0])
      throw WorkError("cannot start \(argv[0]): \(String(cString: strerror(rc)))")
    }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
      let n = read(fds[0], &buf, buf.count)
      if n > 0 { bytes += buf[0..<n] } else if n < 0 && errno == EINTR { continue } else { break }
    }
    close(fds[0])
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let code = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    return (code, String(decoding: bytes, as: UTF8.self))
  }
}
