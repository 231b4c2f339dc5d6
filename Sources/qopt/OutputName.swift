/// What `-o PATH` means without `-emit`, judged from the name alone (never from what happens to
/// be on disk, so the same command writes the same format everywhere): `NAME.ir` is IR plus
/// its sidecar, `NAME.gguf` a GGUF file; anything else — a directory, a name without an
/// extension, another extension — is refused with the flags that say what to write, rather
/// than writing IR text under a name that promises something else.
enum OutputName {
  enum Format: Equatable { case ir, gguf, unknown(String) }

  static func format(of path: String) -> Format {
    if path == "-" { return .unknown("standard output is not an output file; omit -o to print the IR") }
    let base = path.split(separator: "/").last.map(String.init) ?? path
    if base.hasSuffix(".ir") { return .ir }
    if base.hasSuffix(".gguf") { return .gguf }
    return .unknown(
      "cannot tell the output format from the name; use NAME.ir or NAME.gguf, or -emit=compressed-tensors or -emit=safetensors for a directory")
  }

  /// Why `-emit=format -o path` contradicts itself (a GGUF file named `.ir`, a directory named
  /// `.gguf`), or nil when the name fits the format.
  static func conflict(format: String, output path: String) -> String? {
    let gguf = format == "gguf" || format.hasPrefix("gguf:")
    switch self.format(of: path) {
    case .ir: return "the name says IR but -emit=\(format) writes \(gguf ? "a GGUF file" : "a directory")"
    case .gguf where !gguf: return "the name says GGUF but -emit=\(format) writes a directory"
    default: return nil
    }
  }

  /// The command recorded in an output directory's manifest: the arguments as typed, without
  /// `-o PATH` (the manifest lives in that directory), so the same command run into two
  /// directories writes the same bytes.
  static func recordedCommand(_ args: [String]) -> [String] {
    var out = ["qopt"]
    var skip = false
    for a in args {
      if skip { skip = false; continue }
      if a == "-o" { skip = true; continue }
      if a.hasPrefix("-o=") { continue }
      out.append(a)
    }
    return out
  }
}
