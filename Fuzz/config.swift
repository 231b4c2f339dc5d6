// fuzz-modules: QoptSupport QoptIR CQoptCodecs QoptFormats QoptFrontends
import QoptFrontends
import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// Bytes → `config.json` of a checkpoint directory whose `model.safetensors` is a fixed tiny
/// llama (hidden 8, 1 layer, 2 heads, vocab 16) → `HFImporter.importModel`: the config parser,
/// then the lowering that checks every tensor's shape against the config. A config that
/// matches the weights imports; the module's attributes must rebuild the same config.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  let f = fopen(dir + "/config.json", "wb")
  fwrite(data, 1, size, f)
  fclose(f)
  guard let m = try? HFImporter.importModel(directory: dir) else { return 0 }
  guard let c = LlamaConfig(attributes: m.attributes) else { fatalError("imported attributes do not rebuild a config") }
  _ = c.configJSON
  return 0
}

/// The checkpoint directory, created once with the fixed weights.
nonisolated(unsafe) let dir: String = {
  let d = "/tmp/qopt-fuzz-config-\(getpid())"
  mkdir(d, 0o755)
  let D = 8, F = 16, V = 16, H = 2, KV = 1, hd = 4
  var shapes: [(String, [Int])] = [("model.embed_tokens.weight", [V, D]), ("model.norm.weight", [D])]
  let p = "model.layers.0."
  shapes += [
    (p + "input_layernorm.weight", [D]), (p + "post_attention_layernorm.weight", [D]),
    (p + "self_attn.q_proj.weight", [H * hd, D]), (p + "self_attn.k_proj.weight", [KV * hd, D]),
    (p + "self_attn.v_proj.weight", [KV * hd, D]), (p + "self_attn.o_proj.weight", [D, H * hd]),
    (p + "mlp.gate_proj.weight", [F, D]), (p + "mlp.up_proj.weight", [F, D]), (p + "mlp.down_proj.weight", [D, F]),
  ]
  let entries = shapes.map { (name, shape) in
    SafetensorsEntry(name: name, data: TensorData(floats: [Float](repeating: 0.5, count: shape.reduce(1, *)), shape: shape))
  }
  do { try SafetensorsWriter.write(entries, to: d + "/model.safetensors") } catch { fatalError("\(error)") }
  return d
}()
