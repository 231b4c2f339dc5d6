import QoptIR
import QoptPasses
import Synchronization

/// Interrupt and resume for a run with `-o OUT`: block-wise passes checkpoint into
/// `OUT.qopt-resume/` by default; an interrupt prints what is kept and the command that
/// resumes (the same command line, shell-quoted, without `-fresh`); running it again resumes;
/// the directory is removed once the output is written. Without `-o` (the IR printed to
/// stdout) or with `-no-checkpoint` there is no default checkpoint (a pass's explicit
/// `checkpoint-dir=` still works and is never removed).
final class ResumePoint: Sendable {
  /// `OUT.qopt-resume`, or nil when the run keeps no default checkpoint.
  let root: String?
  /// The command that resumes, as one shell-quoted line.
  let command: String
  private let usedRoot = Atomic<Bool>(false)

  init(output: String?, arguments: [String]) {
    root = output.map(Self.root(for:))
    // A first word with `=` would read as a variable assignment: quoted too.
    command = arguments.filter { $0 != "-fresh" && $0 != "--fresh" }.enumerated()
      .map { i, a in shellQuoted(a, force: i == 0 && a.contains("=")) }.joined(separator: " ")
  }

  /// The default checkpoint directory for output `path` (a directory output without its
  /// trailing slashes).
  static func root(for path: String) -> String {
    var p = path
    while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
    return p + ".qopt-resume"
  }

  /// Before the input is read: `-fresh` discards a kept checkpoint; the interrupt handler is
  /// installed. Returns the pass manager's checkpoint settings.
  func start(fresh: Bool) throws -> BlockCheckpoints {
    if fresh, let root, let left = BlockCheckpoints.remove(root: root) {
      throw ResumeError(
        message:
          "-fresh: cannot remove \(root): it holds \(left), which qopt did not write; move it away or remove the directory yourself"
      )
    }
    let kept = root.flatMap {
      fileExists($0) ? keptMessage("the checkpoint in \($0) is kept") : nil
    }
    Interruption.install(message: kept ?? "qopt: interrupted\n")
    return BlockCheckpoints(root: root) { [self] p in
      if p.isDefault { usedRoot.store(true, ordering: .relaxed) }
      Interruption.setMessage(
        p.done == 0
          ? "qopt: interrupted; \(p.pass) had not finished \(p.unit == "blocks" ? "a block" : "a checkpoint"), nothing is kept\n"
          : keptMessage("\(p.pass) kept \(p.done)/\(p.total) \(p.unit) in \(p.directory)"))
    }
  }

  /// After the output is written: removes the default checkpoint this run used. Returns a
  /// warning when a file qopt did not write keeps the directory.
  func finish() -> String? {
    Interruption.setMessage("qopt: interrupted after the output was written\n")
    guard let root, usedRoot.load(ordering: .relaxed),
      let left = BlockCheckpoints.remove(root: root)
    else { return nil }
    return "warning: kept \(root): it holds \(left), which qopt did not write\n"
  }

  private func keptMessage(_ what: String) -> String {
    "qopt: interrupted; \(what)\nqopt: to resume, run the same command:\n  \(command)\n"
  }
}

/// `s` as one shell word: unchanged when it holds only characters no shell treats specially,
/// otherwise (or with `force`) in single quotes (a quote inside written `'\''`).
func shellQuoted(_ s: String, force: Bool = false) -> String {
  let plain =
    !s.isEmpty
    && s.unicodeScalars.allSatisfy { c in
      (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9")
        || "-_./=:,+@%".unicodeScalars.contains(c)
    }
  if plain && !force { return s }
  return "'" + s.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''")
    + "'"
}

/// A default checkpoint that cannot be handled as asked.
struct ResumeError: DiagnosticError {
  var message: String
  var diagnostics: [Diagnostic] { [Diagnostic(.error, message)] }
}
