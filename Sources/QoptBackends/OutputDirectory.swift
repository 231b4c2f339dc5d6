import QoptIR

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Directory outputs replace only what qopt wrote: a directory output (compressed-tensors,
/// safetensors) may take the place of an empty directory or of one whose every file is listed
/// in its `qopt-manifest.json`; anything else is refused, naming one foreign file, unless the
/// user passes `-force`. A user's README or notes in the target directory therefore never
/// vanish because `-o` pointed at the wrong place.
///
/// The manifest is deterministic for a given command (no dates, no paths of the output), so
/// two runs of the same command give byte-identical directories.
public enum OutputDirectory {
  public static let manifestName = "qopt-manifest.json"

  /// Throws unless writing a directory output at `path` deletes only files qopt wrote there.
  public static func checkReplaceable(_ path: String, force: Bool) throws(BackendError) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    guard (st.st_mode & S_IFMT) == S_IFDIR else {
      throw BackendError(output: path, "exists and is not a directory; a directory output cannot replace it (remove it or choose another -o)")
    }
    if force { return }
    let children = directoryEntries(path).sorted()
    if children.isEmpty { return }
    let listed = manifestFiles(path)
    let hasManifest = listed != nil
    // A manifest qopt cannot read is itself foreign.
    let own = Set((listed ?? []) + (hasManifest ? [manifestName] : []))
    guard let foreign = children.first(where: { !own.contains($0) }) else { return }
    let why = hasManifest ? "is not one of the files qopt wrote there" : "was not written by qopt (the directory has no \(manifestName))"
    throw BackendError(
      output: path,
      "'\(path)/\(foreign)' \(why); refusing to replace the directory and delete it (choose another -o, empty the directory, or pass -force to replace it anyway)")
  }

  /// The manifest's content: what wrote the directory and the files it consists of.
  static func manifest(format: String, command: [String], files: [String]) -> [UInt8] {
    let json: JSON = .object([
      ("command", .array(command.map { .string($0) })),
      ("created_by", .string("qopt")),
      ("files", .array(files.sorted().map { .string($0) })),
      ("format", .string(format)),
      ("qopt_version", .string(QoptVersion.current)),
    ])
    return Array((json.pretty + "\n").utf8)
  }

  /// The `files` a directory's manifest lists, or nil when it has no readable manifest.
  static func manifestFiles(_ dir: String) -> [String]? {
    guard let bytes = try? readFile(dir + "/" + manifestName), let j = try? JSON.parse(bytes),
      j["created_by"]?.stringValue == "qopt", let files = j["files"]?.arrayValue
    else { return nil }
    return files.compactMap(\.stringValue)
  }

}
