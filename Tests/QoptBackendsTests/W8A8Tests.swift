import QoptBackends
import QoptFormats
import QoptIR
import QoptPasses
import QoptTestSupport
import Testing

private let formats: String = {
  let root = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false).dropLast(3).joined(separator: "/")
  return root + "/../shared/data/formats"
}()

private func header(_ path: String) throws -> [String: (String, [Int])] {
  let f = try SafetensorsFile(path: path)
  var out: [String: (String, [Int])] = [:]
  for (n, d) in f.tensors { out[n] = (d.dtype.safetensorsName, d.shape) }
  return out
}

/// SyntheticLlama with 8-bit weights (fp8 per channel, or int8 minmax per channel) and the
/// given input quantization on every linear but the head.
private func w8a8Model(fp8: Bool, _ input: InputQuantization) -> Module {
  let m = SyntheticLlama.make(tied: true)
  for (n, s) in SyntheticLlama.linearNames() {
    let w = m.weights.dense(n)!.floats()  // safe: make() stores linears dense
    let q = w.withUnsafeBufferPointer { p in
      fp8 ? FP8Quantizer.quantize(p, rows: s[0], cols: s[1], granularity: .channel)
        : IntQuantizer(scheme: IntScheme(bits: 8, symmetric: true, granularity: .channel, scaleType: .f32), rule: .minmax).quantize(p, rows: s[0], cols: s[1])
    }
    m.weights.set(n, .quantized(q))
  }
  for op in m.allOps where op.kind == .linear && op.operands[1].definingOp?.paramName != "model.embed_tokens.weight" {
    for (k, v) in input.attributes { op.attributes[k] = v }
  }
  return m
}

private func emitAndRead(_ m: Module, _ tag: String, check: (String) throws -> Void) throws -> CompressedTensorsReader.Result {
  let dir = makeTemporaryDirectory(tag)
  defer { removePath(dir) }
  try CompressedTensorsEmitter().emit(m, to: dir + "/out")
  try check(dir + "/out")
  return try CompressedTensorsReader.read(directory: dir + "/out")
}

/// The reader gives back the same codes, scales and input settings as the module had.
private func expectRoundTrip(_ m: Module, _ back: CompressedTensorsReader.Result) {
  let inputs = Dictionary(uniqueKeysWithValues: m.allOps.filter { $0.kind == .linear }.compactMap { op in
    op.inputQuantization.map { (op.operands[1].definingOp!.paramName!, $0) }  // safe: linears read params
  })
  #expect(back.inputQuantization == inputs)
  for (n, _) in SyntheticLlama.linearNames() {
    let a = m.weights.quantized(n)!, b = back.weights.quantized(n)!  // safe: both quantized
    #expect(a.scheme == b.scheme && a.codes.bytes == b.codes.bytes && a.scale.bytes == b.scale.bytes, "\(n)")
  }
}

/// FP8_DYNAMIC: tensors and `quantization_config` exactly as data/formats/fp8-dynamic.md.
@Test func ctFP8Dynamic() throws {
  let listing = try FormatListing(path: formats + "/fp8-dynamic.md")
  let m = w8a8Model(fp8: true, InputQuantization(kind: .fp8, mode: .dynamic, strategy: .token))
  let back = try emitAndRead(m, "fp8dyn") { out in
    let q = try JSON.parse(readFile(out + "/config.json"))["quantization_config"]
    #expect(q == listing.quantizationConfig)
    let h = try header(out + "/model.safetensors")
    #expect(h["model.layers.0.self_attn.q_proj.weight"]! == ("F8_E4M3", [64, 64]))
    #expect(h["model.layers.0.self_attn.q_proj.weight_scale"]! == ("F32", [64, 1]))
    #expect(h.keys.filter { $0.hasSuffix("input_scale") }.isEmpty)
  }
  expectRoundTrip(m, back)
}

/// W8A8 int8: int8 codes as `weight` (not packed), per-channel scales, `int-quantized`, the
/// config exactly as data/formats/w8a8-int8.md.
@Test func ctW8A8Int8() throws {
  let listing = try FormatListing(path: formats + "/w8a8-int8.md")
  let m = w8a8Model(fp8: false, InputQuantization(kind: .int8, mode: .dynamic, strategy: .token))
  let back = try emitAndRead(m, "w8a8") { out in
    let q = try JSON.parse(readFile(out + "/config.json"))["quantization_config"]
    #expect(q == listing.quantizationConfig)
    let h = try header(out + "/model.safetensors")
    #expect(h["model.layers.0.mlp.down_proj.weight"]! == ("I8", [64, 128]))
    #expect(h["model.layers.0.mlp.down_proj.weight_scale"]! == ("F32", [64, 1]))
    #expect(h["model.layers.0.mlp.down_proj.weight_packed"] == nil)
  }
  expectRoundTrip(m, back)
}

/// Static (FP8 preset style): one `X.input_scale` F32 [1] per linear, `dynamic: false`,
/// `static_minmax`, per tensor; read back with the same scales.
@Test func ctStaticInputScales() throws {
  let m = w8a8Model(fp8: true, InputQuantization(kind: .fp8, mode: .static, strategy: .tensor, scale: 0.0123))
  m.allOps.first { $0.kind == .linear }!.attributes["input_scale"] = .float(Double(Float(0.5)))  // safe: it has linears
  let back = try emitAndRead(m, "static") { out in
    let h = try header(out + "/model.safetensors")
    #expect(h["model.layers.0.self_attn.q_proj.input_scale"]! == ("F32", [1]))
    #expect(h.keys.filter { $0.hasSuffix(".input_scale") }.count == 14)
    let a = try JSON.parse(readFile(out + "/config.json"))["quantization_config"]?["config_groups"]?["group_0"]?["input_activations"]
    #expect(a?["dynamic"] == .bool(false) && a?["strategy"] == .string("tensor") && a?["observer"] == .string("static_minmax"))
    #expect(a?["type"] == .string("float"))
  }
  expectRoundTrip(m, back)
  #expect(back.inputQuantization["model.layers.0.self_attn.q_proj.weight"]?.scale == 0.5)
}

/// Combinations no compressed-tensors format holds are refused, naming the tensor.
@Test func ctRefusesMismatchedActivations() throws {
  let mixed = w8a8Model(fp8: true, InputQuantization(kind: .int8, mode: .dynamic, strategy: .token))
  #expect { try CompressedTensorsEmitter().check(mixed, output: "x") } throws: { "\($0)".contains("int8 input activations with") }
  let dense = SyntheticLlama.make(tied: true)
  for op in dense.allOps where op.kind == .linear && op.operands[1].definingOp?.paramName != "model.embed_tokens.weight" { for (k, v) in InputQuantization(kind: .int8, mode: .dynamic, strategy: .token).attributes { op.attributes[k] = v } }
  #expect { try CompressedTensorsEmitter().check(dense, output: "x") } throws: { "\($0)".contains("the weight is not quantized") }
  let int4 = SyntheticLlama.make(tied: true)
  SyntheticLlama.quantizeLinears(int4, scheme: IntScheme(bits: 4, symmetric: true, granularity: .group(32), scaleType: .f32), rule: .minmax)
  for op in int4.allOps where op.kind == .linear && op.operands[1].definingOp?.paramName != "model.embed_tokens.weight" { for (k, v) in InputQuantization(kind: .int8, mode: .dynamic, strategy: .token).attributes { op.attributes[k] = v } }
  #expect { try CompressedTensorsEmitter().check(int4, output: "x") } throws: { "\($0)".contains("needs symmetric 8-bit weights") }
}
