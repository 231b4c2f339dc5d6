import QoptExternKernels
import QoptFrontends
import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// Loads whatever qopt accepts as a model input: an `.ir` file (with its sidecar) or `-` for
/// standard input, a Hugging Face checkpoint directory or a `.gguf` file (imported on the fly).
/// Its external-kernel ops are checked against the registered kernels before it is returned.
func loadInput(path: String) throws -> Module {
  let module = try readInput(path: path)
  try checkExternKernels(module)
  return module
}

/// Refuses a model whose `qopt.extern` ops name a kernel no loaded plugin registered (or a
/// library to load), with the op's location, before any pass or evaluation runs: a model file
/// is untrusted input and cannot bring code of its own (docs/trust-model.md).
func checkExternKernels(_ module: Module) throws {
  try ExternCall.checkAll(in: module)
}

private func readInput(path: String) throws -> Module {
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
  // Checkpoint directories and .gguf files are imported on the fly.
  if ModelImporter.kind(of: path) == .ir { return try ModelImporter.load(path: path) }
  return try IOProgress.importing(path) { try ModelImporter.load(path: path) }
}
