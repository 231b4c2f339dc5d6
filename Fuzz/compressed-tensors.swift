// fuzz-modules: QoptSupport QoptIR CQoptCodecs QoptFormats
import QoptFormats
import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// A compressed-tensors directory → `CompressedTensorsReader.read`. The first input byte picks
/// what the rest is: even, `model.safetensors` beside a fixed config.json (int4, group 32,
/// symmetric); odd, `config.json` beside a fixed valid packed checkpoint.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCompressedTensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  guard size > 0 else { return 0 }
  let fuzzConfig = data[0] & 1 == 1
  write(dir + (fuzzConfig ? "/config.json" : "/model.safetensors"), data + 1, size - 1)
  write(dir + (fuzzConfig ? "/model.safetensors" : "/config.json"), fixed(fuzzConfig))
  if let r = try? CompressedTensorsReader.read(directory: dir) {
    for name in r.weights.names {
      if case .quantized(let q)? = r.weights[name] { _ = q.codes.count }
    }
  }
  return 0
}

func write(_ path: String, _ p: UnsafePointer<UInt8>, _ n: Int) {
  let f = fopen(path, "wb")
  fwrite(p, 1, n, f)
  fclose(f)
}

func write(_ path: String, _ bytes: [UInt8]) {
  bytes.withUnsafeBufferPointer { write(path, $0.baseAddress!, $0.count) }  // safe: never empty
}

func fixed(_ safetensors: Bool) -> [UInt8] { safetensors ? fixedWeights : fixedConfig }

nonisolated(unsafe) let dir: String = {
  let d = "/tmp/qopt-fuzz-ct-\(getpid())"
  mkdir(d, 0o755)
  return d
}()

let fixedConfig = Array("""
  {"model_type": "llama", "hidden_size": 64, "quantization_config": {"quant_method": "compressed-tensors",
   "format": "pack-quantized", "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4,
   "type": "int", "symmetric": true, "strategy": "group", "group_size": 32}}}}}
  """.utf8)

/// One packed 4-bit [4, 64] weight with its scale and shape, and one dense norm.
nonisolated(unsafe) let fixedWeights: [UInt8] = {
  let base = "model.layers.0.mlp.up_proj.weight"
  let packed = TensorData(dtype: .i32, shape: [4, 8], bytes: (0..<128).map { UInt8($0 & 0xFF) })
  let entries = [
    SafetensorsEntry(name: base + "_packed", data: packed),
    SafetensorsEntry(name: base + "_scale", data: TensorData(floats: [Float](repeating: 0.1, count: 8), shape: [4, 2])),
    SafetensorsEntry(name: base + "_shape", data: TensorData(dtype: .i64, shape: [2], bytes: [4, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0])),
    SafetensorsEntry(name: "model.norm.weight", data: TensorData(floats: [Float](repeating: 1, count: 64), shape: [64])),
  ]
  let path = "/tmp/qopt-fuzz-ct-seed-\(getpid()).safetensors"
  do { try SafetensorsWriter.write(entries, to: path) } catch { fatalError("\(error)") }
  let f = fopen(path, "rb")
  var out: [UInt8] = []
  var buf = [UInt8](repeating: 0, count: 4096)
  while true {
    let n = fread(&buf, 1, buf.count, f)
    if n <= 0 { break }
    out += buf[0..<n]
  }
  fclose(f)
  unlink(path)
  return out
}()
