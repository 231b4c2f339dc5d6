import Foundation
import QoptBackends
import QoptFormats
import QoptIR
import QoptPasses
import Testing

private let w4g32 = IntScheme(bits: 4, symmetric: true, granularity: .group(32), scaleType: .f32)

private func header(_ path: String) throws -> [String: (String, [Int])] {
  let f = try SafetensorsFile(path: path)
  var out: [String: (String, [Int])] = [:]
  for (n, d) in f.tensors { out[n] = (d.dtype.safetensorsName, d.shape) }
  return out
}

/// Names, dtypes and shapes as reference/compressed-tensors.md §4 and the W4A16 listing.
@Test func ctTensorLayout() throws {
  let m = SyntheticLlama.make(tied: true)
  SyntheticLlama.quantizeLinears(m, scheme: w4g32, rule: .minmax)
  let dir = makeTemporaryDirectory("ct-layout")
  defer { removePath(dir) }
  try CompressedTensorsEmitter().emit(m, to: dir + "/out")
  #expect(listDirectory(dir) == ["out"])
  #expect(listDirectory(dir + "/out") == ["config.json", "model.safetensors", "qopt-manifest.json"])
  let h = try header(dir + "/out/model.safetensors")
  #expect(h["model.embed_tokens.weight"]! == ("F32", [256, 64]))
  #expect(h["model.layers.0.input_layernorm.weight"]! == ("F32", [64]))
  #expect(h["model.layers.0.mlp.down_proj.weight_packed"]! == ("I32", [64, 16]))
  #expect(h["model.layers.0.mlp.down_proj.weight_scale"]! == ("F32", [64, 4]))
  #expect(h["model.layers.0.mlp.down_proj.weight_shape"]! == ("I64", [2]))
  #expect(h["model.layers.0.self_attn.k_proj.weight_packed"]! == ("I32", [32, 8]))
  #expect(h["model.layers.0.self_attn.k_proj.weight_scale"]! == ("F32", [32, 2]))
  #expect(h["model.layers.0.self_attn.k_proj.weight"] == nil)
  #expect(h["model.layers.0.self_attn.k_proj.weight_zero_point"] == nil)
  #expect(h.count == 1 + 4 + 1 + 14 * 3)
}

/// config.json: source config + quantization_config exactly as the reference writes it.
@Test func ctQuantizationConfig() throws {
  let m = SyntheticLlama.make(tied: true)
  m.attributes["hf_config"] = .string(#"{"_name_or_path": "tiny", "hidden_size": 1, "use_cache": true}"#)
  SyntheticLlama.quantizeLinears(m, scheme: IntScheme(bits: 4, symmetric: true, granularity: .group(64), scaleType: .f32), rule: .minmax)
  let dir = makeTemporaryDirectory("ct-config")
  defer { removePath(dir) }
  try CompressedTensorsEmitter().emit(m, to: dir + "/out")
  let config = try JSON.parse(readFile(dir + "/out/config.json"))
  #expect(config["_name_or_path"] == .string("tiny"))
  #expect(config["use_cache"] == .bool(true))
  #expect(config["hidden_size"] == .int(64))  // the module attribute wins
  #expect(config["architectures"] == .array([.string("LlamaForCausalLM")]))
  #expect(config["torch_dtype"] == .string("float32"))
  let expected = try JSON.parse("""
    {"config_groups": {"group_0": {"format": "pack-quantized", "input_activations": null, "output_activations": null,
      "targets": ["Linear"], "weights": {"actorder": null, "block_structure": null, "dynamic": false, "group_size": 64,
      "num_bits": 4, "observer": "memoryless_minmax", "observer_kwargs": {}, "scale_dtype": null, "strategy": "group",
      "symmetric": true, "type": "int", "zp_dtype": null}}},
     "format": "pack-quantized", "global_compression_ratio": null, "ignore": ["lm_head"], "kv_cache_scheme": null,
     "quant_method": "compressed-tensors", "quantization_status": "compressed", "sparsity_config": {},
     "transform_config": {}, "version": "0.19.0"}
    """)
  #expect(config["quantization_config"] == expected)
}

/// An unquantized Linear is ignored by name; asymmetric weights carry packed zero points.
@Test func ctIgnoreAndZeroPoints() throws {
  let m = SyntheticLlama.make()
  SyntheticLlama.quantizeLinears(m, scheme: IntScheme(bits: 4, symmetric: false, granularity: .group(32), scaleType: .bf16), rule: .minmax)
  // safe: make() stores it dense, quantizeLinears quantized it.
  let q = m.weights.quantized("model.layers.1.mlp.up_proj.weight")!
  m.weights.set("model.layers.1.mlp.up_proj.weight", .dense(TensorData(floats: q.dequantized(), shape: q.shape)))
  let dir = makeTemporaryDirectory("ct-asym")
  defer { removePath(dir) }
  try CompressedTensorsEmitter().emit(m, to: dir + "/out")
  let config = try JSON.parse(readFile(dir + "/out/config.json"))
  #expect(config["quantization_config"]?["ignore"] == .array([.string("model.layers.1.mlp.up_proj"), .string("lm_head")]))
  #expect(config["quantization_config"]?["config_groups"]?["group_0"]?["weights"]?["zp_dtype"] == .string("torch.int8"))
  let h = try header(dir + "/out/model.safetensors")
  #expect(h["model.layers.0.mlp.gate_proj.weight_zero_point"]! == ("I32", [16, 2]))
  #expect(h["model.layers.0.mlp.gate_proj.weight_scale"]! == ("BF16", [128, 2]))
  #expect(h["model.layers.1.mlp.up_proj.weight"]! == ("F32", [128, 64]))
  #expect(h["lm_head.weight"]! == ("F32", [256, 64]))
}

/// Round trip: the reader gives back the same codes, scales and zero points.
@Test(arguments: [
  (IntScheme(bits: 4, symmetric: true, granularity: .group(32), scaleType: .f16), ScaleRule.fullRange),
  (IntScheme(bits: 4, symmetric: false, granularity: .group(64), scaleType: .f32), .minmax),
  (IntScheme(bits: 8, symmetric: true, granularity: .channel, scaleType: .bf16), .minmax),
  (IntScheme(bits: 8, symmetric: false, granularity: .group(32), scaleType: .f32), .fullRange),
])
func ctRoundTrip(_ scheme: IntScheme, _ rule: ScaleRule) throws {
  let m = SyntheticLlama.make()
  SyntheticLlama.quantizeLinears(m, scheme: scheme, rule: rule)
  let tok = Array(#"{"model": {}}"#.utf8)
  m.weights.set("tokenizer.json", .dense(TensorData(dtype: .u8, shape: [tok.count], bytes: tok)))
  let dir = makeTemporaryDirectory("ct-rt")
  defer { removePath(dir) }
  try CompressedTensorsEmitter(maxShardSize: 40_000).emit(m, to: dir + "/out")
  #expect(listDirectory(dir + "/out").contains("model.safetensors.index.json"))
  #expect(listDirectory(dir + "/out").contains("tokenizer.json"))
  let back = try CompressedTensorsReader.read(directory: dir + "/out")
  #expect(back.attributes["hidden_size"] == .int(64))
  #expect(back.weights.dense("tokenizer.json")?.bytes == tok)
  for name in m.weights.names {
    switch m.weights[name]! {  // safe: iterating the store's own names
    case .dense(let d):
      #expect(back.weights.dense(name)?.isIdentical(to: d) == true, "\(name)")
    case .quantized(let q):
      guard let r = back.weights.quantized(name) else {
        Issue.record("\(name) not read back as quantized")
        continue
      }
      #expect(r.scheme == q.scheme, "\(name)")
      // Packed codes are unpacked on use, one tensor at a time, and dropped again by
      // `releasePages` (an 8B model's would be 7 GB as i8): the same codes each time.
      if scheme.bits == 4 { #expect(r.codes.isDeferred, "\(name)") }
      #expect(r.codes.isIdentical(to: q.codes), "\(name)")
      r.codes.releasePages()
      if scheme.bits == 4 { #expect(r.codes.isDeferred, "\(name)") }
      #expect(r.codes.isIdentical(to: q.codes), "\(name)")
      #expect(r.scale.isIdentical(to: q.scale.reshaped(r.scale.shape)), "\(name)")
      #expect(r.zeroPoint?.int8s() == q.zeroPoint?.int8s(), "\(name)")
    }
  }
}

/// A scheme vLLM cannot load is refused before anything is written, naming the tensor.
@Test func ctRefusesBadSchemeBeforeWriting() throws {
  let m = SyntheticLlama.make()
  SyntheticLlama.quantizeLinears(m, scheme: IntScheme(bits: 4, symmetric: true, granularity: .group(48), scaleType: .f16), rule: .fullRange)
  let dir = makeTemporaryDirectory("ct-bad")
  defer { removePath(dir) }
  #expect {
    try CompressedTensorsEmitter().emit(m, to: dir + "/out")
  } throws: { e in
    let s = "\(e)"
    return s.contains("tensor 'model.layers.0.self_attn.q_proj.weight'") && s.contains("group size 48 does not divide the row of 64 columns")
  }
  #expect(listDirectory(dir).isEmpty)

  let m3 = SyntheticLlama.make()
  SyntheticLlama.quantizeLinears(m3, scheme: IntScheme(bits: 3, symmetric: true, granularity: .group(32), scaleType: .f16), rule: .fullRange)
  #expect { try CompressedTensorsEmitter().check(m3, output: "x") } throws: { "\($0)".contains("3-bit codes") }
}

/// An existing output is replaced whole only when qopt wrote it (or with `force`); a failing
/// emit leaves it untouched.
@Test func ctAtomicReplace() throws {
  let dir = makeTemporaryDirectory("ct-atomic")
  defer { removePath(dir) }
  let out = dir + "/out"
  let own = ["config.json", "model.safetensors", "qopt-manifest.json"]
  _ = mkdirCompat(out + "/sub")
  // A directory holding something qopt did not write is refused, naming it.
  #expect { try CompressedTensorsEmitter().emit(SyntheticLlama.make(), to: out) } throws: {
    "\($0)".contains("'\(out)/sub' was not written by qopt") && "\($0)".contains("-force")
  }
  #expect(listDirectory(out) == ["sub"])
  try CompressedTensorsEmitter(force: true, command: ["qopt", "test"]).emit(SyntheticLlama.make(), to: out)
  #expect(listDirectory(out) == own)
  #expect(listDirectory(dir) == ["out"])
  // qopt's own output is replaced without force.
  try CompressedTensorsEmitter(command: ["qopt", "test"]).emit(SyntheticLlama.make(), to: out)
  #expect(listDirectory(out) == own)
  let bad = SyntheticLlama.make()
  SyntheticLlama.quantizeLinears(bad, scheme: IntScheme(bits: 2, symmetric: true, granularity: .group(32), scaleType: .f16), rule: .fullRange)
  #expect(throws: BackendError.self) { try CompressedTensorsEmitter().emit(bad, to: out) }
  #expect(listDirectory(out) == own)
  #expect(listDirectory(dir) == ["out"])
  // Checked on its own, as the CLI does before any pass runs.
  #expect(throws: Never.self) { try OutputDirectory.checkReplaceable(out, force: false) }
  #expect(FileManager.default.createFile(atPath: out + "/NOTES.md", contents: Data("x".utf8)))
  #expect { try OutputDirectory.checkReplaceable(out, force: false) } throws: { "\($0)".contains("NOTES.md' is not one of the files qopt wrote there") }
  #expect(throws: Never.self) { try OutputDirectory.checkReplaceable(out, force: true) }
}

@Test func shardSizes() {
  #expect(parseShardSize("5GB") == 5_000_000_000)
  #expect(parseShardSize("500MB") == 500_000_000)
  #expect(parseShardSize("2GiB") == 2_147_483_648)
  #expect(parseShardSize("1000") == 1000)
  #expect(parseShardSize("x") == nil)
}

/// Malformed directories are located errors, not crashes.
@Test func ctReaderRejectsMalformedInput() throws {
  let dir = makeTemporaryDirectory("ct-malformed")
  defer { removePath(dir) }
  #expect(throws: StorageError.self) { try CompressedTensorsReader.read(directory: dir) }  // no config.json
  try CompressedTensorsEmitter().emit({
    let m = SyntheticLlama.make()
    SyntheticLlama.quantizeLinears(m, scheme: w4g32, rule: .minmax)
    return m
  }(), to: dir + "/ok")
  // A weight_shape that disagrees with weight_packed.
  let st = try SafetensorsFile(path: dir + "/ok/model.safetensors")
  var entries: [SafetensorsEntry] = []
  for (n, d) in st.tensors {
    if n == "model.layers.0.mlp.up_proj.weight_shape" {
      let v: [Int64] = [128, 96]
      entries.append(SafetensorsEntry(name: n, data: TensorData(dtype: .i64, shape: [2], bytes: v.withUnsafeBytes { Array($0) })))
    } else {
      entries.append(SafetensorsEntry(name: n, data: d))
    }
  }
  try SafetensorsWriter.write(entries, to: dir + "/ok/model.safetensors")
  #expect {
    try CompressedTensorsReader.read(directory: dir + "/ok")
  } throws: { "\($0)".contains("model.layers.0.mlp.up_proj.weight_packed") }
  let cfg = Array("{not json".utf8)
  try SafetensorsWriter.write([], to: dir + "/x.safetensors")
  _ = mkdirCompat(dir + "/bad")
  try cfg.withUnsafeBytes { b in
    let f = try AtomicFileWriter(path: dir + "/bad/config.json")
    try f.write(b)
    try f.commit()
  }
  #expect { try CompressedTensorsReader.read(directory: dir + "/bad") } throws: { "\($0)".contains("config.json") }
}

/// NVFP4A16: `nvfp4-pack-quantized` tensors and config as reference/compressed-tensors.md §6 and
/// data/formats/nvfp4a16.md; §7.3's packed bytes; the reader gives the same codes back.
@Test func ctNVFP4() throws {
  let g0: [Float] = [0.0, 0.25, 0.3, 0.75, 1.25, 1.3, 1.75, 2.5, 2.6, 3.5, 5.0, 5.1, -6.0, -0.1, -1.0, -4.0]
  let g1: [Float] = [1.3, -1.3, 0.2, -0.2, 0.5, 0.65, -0.9, 1.0, 0.05, -0.05, 0.33, 0.75, -1.1, 1.2, 0.0, 0.4]
  let vq = (g0 + g1).withUnsafeBufferPointer { NVFP4Quantizer.quantize($0, rows: 1, cols: 32) }
  let packed = try CompressedTensorsEmitter.nvfp4Entries(for: vq, name: "w.weight")[0].produce()
  #expect(hex(packed.bytes) == "0021324465768feaf7a2546e80637f40")
  #expect(vq.scale.bytes == [0x7E, 0x6C])

  let m = SyntheticLlama.make(tied: true)
  for (n, s) in SyntheticLlama.linearNames() {
    let w = m.weights.dense(n)!.floats()  // safe: make() stores linears dense
    m.weights.set(n, .quantized(w.withUnsafeBufferPointer { NVFP4Quantizer.quantize($0, rows: s[0], cols: s[1]) }))
  }
  let dir = makeTemporaryDirectory("ct-nvfp4")
  defer { removePath(dir) }
  try CompressedTensorsEmitter().emit(m, to: dir + "/out")
  let h = try header(dir + "/out/model.safetensors")
  #expect(h["model.layers.0.mlp.down_proj.weight_packed"]! == ("U8", [64, 64]))
  #expect(h["model.layers.0.mlp.down_proj.weight_scale"]! == ("F8_E4M3", [64, 8]))
  #expect(h["model.layers.0.mlp.down_proj.weight_global_scale"]! == ("F32", [1]))
  #expect(h["model.layers.0.mlp.down_proj.weight_shape"] == nil)
  let config = try JSON.parse(readFile(dir + "/out/config.json"))
  let q = config["quantization_config"]
  #expect(q?["format"] == .string("nvfp4-pack-quantized"))
  #expect(q?["config_groups"]?["group_0"]?["format"] == .string("nvfp4-pack-quantized"))
  #expect(q?["config_groups"]?["group_0"]?["weights"]?["scale_dtype"] == .string("torch.float8_e4m3fn"))
  #expect(q?["config_groups"]?["group_0"]?["weights"]?["strategy"] == .string("tensor_group"))
  let back = try CompressedTensorsReader.read(directory: dir + "/out")
  for (n, _) in SyntheticLlama.linearNames() {
    let a = m.weights.quantized(n)!, b = back.weights.quantized(n)!  // safe: both quantized
    #expect(b.scheme == .nvfp4(group: 16))
    #expect(b.codes.isDeferred, "\(n): unpacked on use")
    #expect(a.codes.bytes == b.codes.bytes && a.scale.bytes == b.scale.bytes && a.globalScale?.bytes == b.globalScale?.bytes, "\(n)")
  }
}

/// FP8 weights: `float-quantized`, `X.weight` F8_E4M3 + `X.weight_scale` F32 [out, 1] as
/// data/formats/fp8-dynamic.md (weights half); read back unchanged.
@Test func ctFP8() throws {
  let m = SyntheticLlama.make(tied: true)
  for (n, s) in SyntheticLlama.linearNames() {
    let w = m.weights.dense(n)!.floats()  // safe: make() stores linears dense
    m.weights.set(n, .quantized(w.withUnsafeBufferPointer { FP8Quantizer.quantize($0, rows: s[0], cols: s[1], granularity: .channel) }))
  }
  let dir = makeTemporaryDirectory("ct-fp8")
  defer { removePath(dir) }
  try CompressedTensorsEmitter().emit(m, to: dir + "/out")
  let h = try header(dir + "/out/model.safetensors")
  #expect(h["model.layers.0.mlp.down_proj.weight"]! == ("F8_E4M3", [64, 128]))
  #expect(h["model.layers.0.mlp.down_proj.weight_scale"]! == ("F32", [64, 1]))
  let q = try JSON.parse(readFile(dir + "/out/config.json"))["quantization_config"]
  #expect(q?["format"] == .string("float-quantized"))
  let w = q?["config_groups"]?["group_0"]?["weights"]
  #expect(w?["strategy"] == .string("channel") && w?["group_size"] == .null && w?["type"] == .string("float"))
  #expect(q?["config_groups"]?["group_0"]?["input_activations"] == .null)
  let back = try CompressedTensorsReader.read(directory: dir + "/out")
  for (n, _) in SyntheticLlama.linearNames() {
    let a = m.weights.quantized(n)!, b = back.weights.quantized(n)!  // safe: both quantized
    #expect(b.scheme == a.scheme && a.codes.bytes == b.codes.bytes && a.scale.bytes == b.scale.bytes, "\(n)")
  }
}

/// Two schemes in one model: one config group each, listing their modules; `mixed-precision`.
@Test func ctMixedPrecision() throws {
  let m = SyntheticLlama.make(tied: true)
  SyntheticLlama.quantizeLinears(m, scheme: w4g32, rule: .minmax)
  let n = "model.layers.1.mlp.down_proj.weight"
  let w = try #require(m.weights.quantized(n)).dequantized()
  m.weights.set(n, .quantized(w.withUnsafeBufferPointer { NVFP4Quantizer.quantize($0, rows: 64, cols: 128) }))
  let dir = makeTemporaryDirectory("ct-mixed")
  defer { removePath(dir) }
  try CompressedTensorsEmitter().emit(m, to: dir + "/out")
  let q = try JSON.parse(readFile(dir + "/out/config.json"))["quantization_config"]
  #expect(q?["format"] == .string("mixed-precision"))
  #expect(q?["config_groups"]?["group_0"]?["format"] == .string("pack-quantized"))
  #expect(q?["config_groups"]?["group_1"]?["targets"] == .array([.string("model.layers.1.mlp.down_proj")]))
  #expect(q?["config_groups"]?["group_0"]?["targets"]?.arrayValue?.count == 13)
}
