import QoptFormats
import QoptFrontends
import QoptIR
import QoptTestSupport

#if canImport(Glibc)
  import Glibc
#endif

/// Regenerates the bundled example model: `qopt-gen-example [OUT.ir]`
/// (default IR/examples/tiny-llama.ir, plus its .safetensors sidecar).
///
/// Or writes a random bf16 Hugging Face checkpoint of a named shape:
/// `qopt-gen-example -shape llama-8b|tiny-sharded -o DIR [-seed N] [-layers N] [-single-file]
/// [-tokenizer MODEL.gguf|tokenizer.json]` (see `HFCheckpointGenerator`); `-layers` keeps the
/// shape's widths with fewer (or more) decoder layers.
var args = Array(CommandLine.arguments.dropFirst())
func fail(_ message: String) -> Never {
  print("error: \(message)")
  exit(1)
}
if args.contains(where: { $0.hasPrefix("-") }) {
  var shapeName: String?
  var out: String?
  var seed: UInt64 = 1
  var single = false
  var tokenizer: String?
  var layers: Int?
  while !args.isEmpty {
    let a = args.removeFirst()
    func value() -> String {
      guard !args.isEmpty else { fail("\(a) needs a value") }
      return args.removeFirst()
    }
    switch a {
    case "-shape": shapeName = value()
    case "-o": out = value()
    case "-seed":
      let v = value()
      guard let s = UInt64(v) else { fail("-seed: '\(v)' is not an unsigned integer") }
      seed = s
    case "-single-file": single = true
    case "-layers":
      let v = value()
      guard let n = Int(v), n > 0 else { fail("-layers: '\(v)' is not a positive integer") }
      layers = n
    case "-tokenizer": tokenizer = value()
    default: fail("unknown argument '\(a)'")
    }
  }
  let names = CheckpointShape.all.map(\.name).joined(separator: ", ")
  guard let shapeName else { fail("-shape is required (one of: \(names))") }
  guard var shape = CheckpointShape.all.first(where: { $0.name == shapeName }) else {
    fail("-shape: unknown shape '\(shapeName)' (one of: \(names))")
  }
  if let layers { shape.layers = layers }
  guard let out else { fail("-o DIR is required with -shape") }
  var extra: [(String, [UInt8])] = []
  if let tokenizer {
    do {
      if tokenizer.hasSuffix(".gguf") {
        if let tok = try GGUFTokenizerJSON.synthesize(GGUFFile(path: tokenizer)) {
          extra.append(("tokenizer.json", tok))
        } else {
          fail("\(tokenizer): no tokenizer.ggml.* metadata to build tokenizer.json from")
        }
      } else {
        extra.append(("tokenizer.json", try readFile(tokenizer)))
      }
    } catch { fail("\(error)") }
  }
  do {
    let s = try HFCheckpointGenerator.write(
      shape, to: out, seed: seed, singleFile: single, extraFiles: extra)
    print("wrote \(out): \(s.files.count) files, \(s.tensorBytes) bytes of bf16 tensors")
  } catch { fail("\(error)") }
} else {
  let out = args.first ?? "IR/examples/tiny-llama.ir"
  do {
    try ModuleIO.save(ExampleModel.make(), to: out)
    print("wrote \(out) and \(ModuleIO.sidecarPath(for: out))")
  } catch { fail("\(error)") }
}
