import QoptBackends
import QoptFrontends
import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// Loads whatever qopt accepts as a model input: an `.ir` file (with its sidecar) or `-` for
/// standard input, a Hugging Face checkpoint directory or a `.gguf` file (imported on the fly).
func loadInput(path: String) throws -> Module {
  if path == "-" {
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 1 << 16)
    while true {
      let n = read(0, &buf, buf.count)
      if n <= 0 { break }
      bytes += buf[0..<n]
    }
    guard let text = String(validating: bytes, as: UTF8.self) else {
      throw StorageError(file: "<stdin>", offset: nil, message: "input is not valid UTF-8")
    }
    return try ModuleIO.load(text: text, file: "<stdin>")
  }
  guard fileExists(path) else {
    throw StorageError(file: path, offset: nil, message: "no such file or directory")
  }
  // A compressed-tensors checkpoint is read (every tensor validated) but cannot be lowered
  // yet: say so instead of failing on its first packed tensor.
  if ModelImporter.kind(of: path) == .checkpointDirectory, isCompressedTensors(directory: path) {
    _ = try CompressedTensorsReader.read(directory: path)
    throw StorageError(file: path, offset: nil, message: "compressed-tensors checkpoints cannot be imported yet (the files are valid)")
  }
  // Checkpoint directories and .gguf files are imported on the fly.
  return try ModelImporter.load(path: path)
}

/// Whether `dir/config.json` has a `quantization_config` (compressed-tensors or not: the
/// reader names what it does not support).
func isCompressedTensors(directory dir: String) -> Bool {
  guard let bytes = try? readFile(dir + "/config.json") else { return false }
  // Not JSON: the importer that runs next reports where.
  guard let j = try? JSON.parse(bytes) else { return false }
  return j["quantization_config"] != nil
}
