#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif
import QoptIR

/// An output directory that appears under its final name only when `commit()` succeeds.
///
/// Files are written into a temporary sibling `.NAME.qopt-tmp-PID`; `commit()` moves an
/// existing target aside, renames the temporary directory into place and then deletes the old
/// one, so readers see either the old output or the complete new one. Dropping the value
/// without committing deletes the temporary directory.
///
/// An existing target is replaced only when `OutputDirectory.checkReplaceable` allows it
/// (empty, or every file listed in the `qopt-manifest.json` that `commit` writes), or with
/// `force`.
final class AtomicDirectory {
  let path: String
  let temporaryPath: String
  let force: Bool
  private var committed = false
  /// The files written so far, listed in the manifest.
  private(set) var written: [String] = []

  init(path: String, force: Bool = false) throws(BackendError) {
    var p = path
    while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
    self.path = p
    self.force = force
    let dir = parentDirectory(of: p)
    let base = String(p.split(separator: "/").last ?? "out")
    temporaryPath = (dir.isEmpty ? "" : dir + "/") + ".\(base).qopt-tmp-\(getpid())"
    if fileExists(temporaryPath) { removeTree(temporaryPath) }
    // What a killed run left: its temporary directory goes; an output it had moved aside but
    // not yet replaced goes back into place.
    for stale in staleTemporaries(of: p, kind: "tmp") { removeTree(stale) }
    for old in staleTemporaries(of: p, kind: "old") {
      if !fileExists(p) && rename(old, p) == 0 { continue }
      removeTree(old)
    }
    try OutputDirectory.checkReplaceable(p, force: force)
    guard mkdir(temporaryPath, 0o755) == 0 else {
      throw BackendError(output: p, "cannot create directory '\(temporaryPath)': \(String(cString: strerror(errno)))")
    }
  }

  deinit {
    if !committed { removeTree(temporaryPath) }
  }

  /// The path of `name` inside the temporary directory.
  func file(_ name: String) -> String {
    if !written.contains(name) { written.append(name) }
    return temporaryPath + "/" + name
  }

  /// Writes a small file whole.
  func write(_ name: String, _ bytes: [UInt8]) throws {
    let out = try AtomicFileWriter(path: file(name))
    try out.write(bytes)
    try out.commit()
  }

  /// Writes the manifest (`format`, the command that made the output, every file written),
  /// then renames the directory into place.
  func commit(format: String, command: [String]) throws {
    let files = written
    try write(OutputDirectory.manifestName, OutputDirectory.manifest(format: format, command: command, files: files))
    try commit()
  }

  /// Renames the directory into place, replacing an existing output.
  func commit() throws(BackendError) {
    // Checked again: the directory may have gained files while the output was being written.
    try OutputDirectory.checkReplaceable(path, force: force)
    var aside: String?
    if fileExists(path) {
      let old = temporaryPath.replacingOccurrences(of: ".qopt-tmp-", with: ".qopt-old-")
      if fileExists(old) { removeTree(old) }
      guard rename(path, old) == 0 else {
        throw BackendError(output: path, "cannot move the existing output aside: \(String(cString: strerror(errno)))")
      }
      aside = old
    }
    guard rename(temporaryPath, path) == 0 else {
      let e = String(cString: strerror(errno))
      if let aside { _ = rename(aside, path) }
      throw BackendError(output: path, "cannot rename the output into place: \(e)")
    }
    committed = true
    if let aside { removeTree(aside) }
  }
}

extension String {
  fileprivate func replacingOccurrences(of a: String, with b: String) -> String {
    guard let r = range(of: a) else { return self }
    return String(self[..<r.lowerBound]) + b + String(self[r.upperBound...])
  }

  fileprivate func range(of needle: String) -> Range<String.Index>? {
    var i = startIndex
    while i < endIndex {
      if self[i...].hasPrefix(needle) { return i..<index(i, offsetBy: needle.count) }
      i = index(after: i)
    }
    return nil
  }
}
