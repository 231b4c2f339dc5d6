import QoptIR

/// The import and emit phases as `Progress` shows them: on a terminal a status line with the
/// bytes read or written so far and an ETA, otherwise one closing line per phase (stderr;
/// `-quiet` silences both). The bytes are counted where they are read or written (the
/// safetensors and GGUF writers, the checkpoint importer).
enum IOProgress {
  /// Imports a checkpoint (`.gguf` or a directory): "import: PATH, N MiB of tensors in T s"
  /// (a GGUF's tensors are decoded on use, by the passes or the emit, so it counts none here).
  static func importing<T>(_ path: String, _ body: () throws -> T) throws -> T {
    try Progress.shared.transfer("import \(path)", body) { seconds, bytes in
      "import: \(path)\(bytes > 0 ? ", \(Progress.mebibytes(bytes)) MiB of tensors" : "") in \(Progress.duration(seconds))"
    }
  }

  /// Writes an output: "emit: PATH (FORMAT), N MiB of tensors in T s".
  static func emitting(_ output: String, format: String, _ body: () throws -> Void) throws {
    try Progress.shared.transfer("emit \(output)", body) { seconds, bytes in
      "emit: \(output) (\(format)), \(Progress.mebibytes(bytes)) MiB of tensors in \(Progress.duration(seconds))"
    }
  }
}
