import QoptFormats
import QoptIR

/// One entry point for every model input qopt accepts: a checkpoint directory, a `.gguf`
/// file, or an `.ir` file (with its sidecar).
public enum ModelImporter {
  /// What `path` is, judged from the file system and its name.
  public enum Kind: Sendable { case checkpointDirectory, gguf, ir }

  public static func kind(of path: String) -> Kind {
    if isDirectoryFollowingLinks(path) { return .checkpointDirectory }
    if path.hasSuffix(".gguf") { return .gguf }
    return .ir
  }

  /// Imports or loads `path`; the module's `sourceFile` is set to `path`.
  public static func load(path: String) throws -> Module {
    let m: Module
    switch kind(of: path) {
    case .checkpointDirectory: m = try HFImporter.importModel(directory: path)
    case .gguf: m = try GGUFImporter.importModel(path: path)
    case .ir: return try ModuleIO.load(path: path)
    }
    m.sourceFile = path
    return m
  }
}

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

func isDirectoryFollowingLinks(_ path: String) -> Bool {
  var st = stat()
  return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}
