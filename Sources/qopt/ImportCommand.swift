import ArgumentParser
import QoptFrontends
import QoptIR
import QoptPasses
import QoptPluginHost

/// `qopt import SRC -o model.ir`: a checkpoint directory or `.gguf` → `.ir` + sidecar.
struct ImportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "import", abstract: "Lower a Hugging Face checkpoint directory or a .gguf file to IR.",
    helpNames: [.customLong("help", withSingleDash: true), .short, .long])

  @Argument(help: "A checkpoint directory (config.json + *.safetensors) or a .gguf file.")
  var source: String

  @Option(name: .customShort("o"), help: "Output .ir path; the weights go to the .safetensors beside it.")
  var output: String

  @Flag(name: .customLong("keep-quantized", withSingleDash: true), help: "GGUF: keep Q8_0/Q4_0 tensors as quantized IR weights (same codes and scales) instead of decoding them to f32.")
  var keepQuantized = false

  @Option(
    name: .customLong("load-pass-plugin", withSingleDash: true),
    help: "Load a pass plugin first, so that an .ir source may name its external kernels (repeatable).")
  var loadPassPlugin: [String] = []

  @Flag(name: .customLong("quiet", withSingleDash: true), help: "No progress lines on stderr.")
  var quiet = false

  func validate() throws {
    // Import writes IR; a .gguf or directory name would hold IR text under a promise it breaks.
    guard OutputName.format(of: output) == .ir else {
      throw ValidationError("-o \(output): import writes IR; name it NAME.ir (for other formats: qopt \(source) -emit=... -o \(output))")
    }
  }

  func run() throws {
    try PluginLoader.loadAll(loadPassPlugin, into: PassRegistry.builtin())
    guard fileExists(source) else { throw StorageError(file: source, offset: nil, message: "no such file or directory") }
    if quiet { Progress.shared.style = .quiet }
    let module: Module
    if keepQuantized && ModelImporter.kind(of: source) == .gguf {
      module = try IOProgress.importing(source) { try GGUFImporter.importModel(path: source, keepQuantized: true) }
      module.sourceFile = source
    } else if ModelImporter.kind(of: source) == .ir {
      module = try ModelImporter.load(path: source)
    } else {
      module = try IOProgress.importing(source) { try ModelImporter.load(path: source) }
    }
    try checkExternKernels(module)
    try module.verify()
    try IOProgress.emitting(output, format: "ir") { try ModuleIO.save(module, to: output) }
  }
}
