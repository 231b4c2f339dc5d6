#if canImport(Glibc)
  import Glibc
#endif
import QoptIR
import QoptTestSupport

/// Regenerates the bundled example model: `qopt-gen-example [OUT.ir]`
/// (default IR/examples/tiny-llama.ir, plus its .safetensors sidecar).
let out = CommandLine.arguments.dropFirst().first ?? "IR/examples/tiny-llama.ir"
do {
  try ModuleIO.save(ExampleModel.make(), to: out)
  print("wrote \(out) and \(ModuleIO.sidecarPath(for: out))")
} catch {
  print("error: \(error)")
  exit(1)
}
