import Foundation
import QoptBackends
import QoptFormats
import QoptIR
import QoptPasses
import QoptTestSupport
import Testing

/// The cross-checks against gguf-py run where a Python with gguf and numpy exists (or can be
/// made under .build/venv); elsewhere they are skipped, saying why.
let needsGGUFPy: ConditionTrait = .enabled(
  if: TestPython.withGGUF != nil,
  "needs a Python with gguf and numpy: python3 lacks them and pip could not install them into .build/venv")

/// Writes `expected.safetensors` for `gguf_crosscheck.py`: per GGUF tensor, qopt's dequantized
/// weights in GGUF row order, and for float sources the f32 weights that were quantized.
private func writeExpected(_ module: Module, emitter: GGUFEmitter, to path: String) throws {
  var entries: [SafetensorsEntry] = []
  let heads = (q: SyntheticLlama.heads, kv: SyntheticLlama.kvHeads)
  for t in try emitter.layout(module, output: path) {
    // safe: layout lists only names present in the store.
    let entry = module.weights[t.hf]!
    let rows = t.shape.count == 1 ? 1 : t.shape[0]
    let cols = t.shape.last ?? 1
    var order = Array(0..<rows)
    if let r = LlamaTensorNames.rotary(gguf: t.gguf) {
      order = LlamaTensorNames.permutation(rows: rows, heads: r == .q ? heads.q : heads.kv) ?? order  // safe fallback
    }
    func permuted(_ v: [Float]) -> [Float] {
      var out = [Float](repeating: 0, count: v.count)
      for r in 0..<rows { for c in 0..<cols { out[r * cols + c] = v[order[r] * cols + c] } }
      return out
    }
    switch entry {
    case .dense(let d):
      let src = permuted(d.floats())
      let srcT = TensorData(floats: src, shape: t.shape)
      let bytes = GGUFEmitter.encodeDense(srcT, as: t.type, rowOrder: nil, threads: 1)
      let deq = bytes.withUnsafeBytes { BlockQuantizers.decode($0, count: src.count, type: t.type) }
      entries.append(SafetensorsEntry(name: "deq:" + t.gguf, data: TensorData(floats: deq, shape: t.shape)))
      entries.append(SafetensorsEntry(name: "src:" + t.gguf, data: srcT))
    case .quantized(let q):
      entries.append(SafetensorsEntry(name: "deq:" + t.gguf, data: TensorData(floats: permuted(q.dequantized()), shape: t.shape)))
    }
  }
  try SafetensorsWriter.write(entries, to: path)
}

private func crosscheck(_ module: Module, _ emitter: GGUFEmitter, tag: String) throws -> String {
  let dir = makeTemporaryDirectory(tag)
  defer { removePath(dir) }
  try emitter.emit(module, to: dir + "/model.gguf")
  try writeExpected(module, emitter: emitter, to: dir + "/expected.safetensors")
  let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Scripts/gguf_crosscheck.py").path
  let python = try #require(TestPython.withGGUF)
  let (status, out) = try runProcess("/usr/bin/env", [python, script, dir + "/model.gguf", dir + "/expected.safetensors"])
  #expect(status == 0, "gguf_crosscheck.py failed:\n\(out)")
  return out
}

/// Float weights, each default type: bytes equal `gguf.quants.quantize`, values equal the
/// package's decoder.
@Test(needsGGUFPy, arguments: [GGMLType.q4_0, .q4_1, .q8_0, .f16, .bf16, .f32])
func ggufFloatWeightsMatchGGUFPy(_ type: GGMLType) throws {
  let m = SyntheticLlama.make()
  let out = try crosscheck(m, GGUFEmitter(types: GGUFTypeSelection(defaultType: type)), tag: "gguf-\(type.name)")
  #expect(out.contains("ok: 21 tensors dequantize identically, 21 byte-identical"))
}

/// Per-tensor overrides by HF name, GGUF name and regex; bf16 and f16 sources.
@Test(needsGGUFPy) func ggufOverridesAndSourceDTypes() throws {
  for dtype in [DType.f16, .bf16] {
    let m = SyntheticLlama.make(dtype: dtype, tied: true)
    let sel = GGUFTypeSelection(defaultType: .q4_0, overrides: [
      GGUFTypeSelection.parseOverride("re:ffn_down:q8_0")!,  // safe: valid literal
      GGUFTypeSelection.parseOverride("model.layers.1.mlp.up_proj.weight:q4_1")!,  // safe: valid literal
      GGUFTypeSelection.parseOverride("token_embd.weight:f16")!,  // safe: valid literal
    ])
    let e = GGUFEmitter(types: sel)
    let types = Dictionary(uniqueKeysWithValues: try e.layout(m, output: "x").map { ($0.gguf, $0.type) })
    #expect(types["blk.0.ffn_down.weight"] == .q8_0)
    #expect(types["blk.1.ffn_up.weight"] == .q4_1)
    #expect(types["blk.0.ffn_up.weight"] == .q4_0)
    #expect(types["token_embd.weight"] == .f16)
    #expect(types["output_norm.weight"] == .f32)
    #expect(types["output.weight"] == nil)
    _ = try crosscheck(m, e, tag: "gguf-overrides")
  }
}

/// Weights quantized in the IR are packed exactly: dequantizing the GGUF gives the IR's values.
@Test(needsGGUFPy) func ggufPackedIRWeightsAreExact() throws {
  let m = SyntheticLlama.make()
  SyntheticLlama.quantizeLinears(m, scheme: IntScheme(bits: 4, symmetric: true, granularity: .group(32), scaleType: .f16), rule: .fullRange)
  let e = GGUFEmitter()
  let types = Dictionary(uniqueKeysWithValues: try e.layout(m, output: "x").map { ($0.gguf, $0.type) })
  #expect(types["blk.0.attn_q.weight"] == .q4_0)
  #expect(types["token_embd.weight"] == .f32)
  _ = try crosscheck(m, e, tag: "gguf-preq4")

  let m8 = SyntheticLlama.make()
  SyntheticLlama.quantizeLinears(m8, scheme: IntScheme(bits: 8, symmetric: true, granularity: .group(64), scaleType: .f16), rule: .fullRange)
  _ = try crosscheck(m8, GGUFEmitter(types: GGUFTypeSelection(defaultType: .q8_0)), tag: "gguf-preq8")
  // Per-channel int8 (one scale per 64-wide row) is q8_0 too.
  let mc = SyntheticLlama.make()
  SyntheticLlama.quantizeLinears(mc, scheme: IntScheme(bits: 8, symmetric: true, granularity: .channel, scaleType: .f16), rule: .fullRange)
  #expect(try GGUFEmitter().layout(mc, output: "x").first { $0.gguf == "blk.1.ffn_down.weight" }?.type == .q8_0)
  _ = try crosscheck(mc, GGUFEmitter(), tag: "gguf-preq8ch")
  // int4 codes also fit q8_0 and q4_1 exactly.
  _ = try crosscheck(m, GGUFEmitter(types: GGUFTypeSelection(defaultType: .q8_0)), tag: "gguf-preq4as8")
  _ = try crosscheck(m, GGUFEmitter(types: GGUFTypeSelection(defaultType: .q4_1)), tag: "gguf-preq4as41")
}

/// Asymmetric int4 with offsets exact in f16 → q4_1; q4_0 refuses it before writing.
@Test(needsGGUFPy) func ggufAsymmetricInt4() throws {
  let m = SyntheticLlama.make()
  for (n, s) in SyntheticLlama.linearNames() {
    let (rows, cols) = (s[0], s[1])
    let codes = SyntheticLlama.values(rows * cols, seed: 99).map { Int8(($0 * 7.99).rounded(.down)) }
    let groups = cols / 32
    let scales: [Float] = (0..<(rows * groups)).map { (i: Int) -> Float in
      let sign: Float = i % 3 == 0 ? -1 : 1
      return Float(1 << (i % 4)) / 64 * sign
    }
    let zeros = (0..<(rows * groups)).map { Int8($0 % 16 - 8) }
    m.weights.set(n, .quantized(QuantizedTensor(
      scheme: .int(IntScheme(bits: 4, symmetric: false, granularity: .group(32), scaleType: .f16)),
      codes: TensorData(int8: codes, shape: [rows, cols]), scale: TensorData(floats: scales, shape: [rows, groups], as: .f16),
      zeroPoint: TensorData(int8: zeros, shape: [rows, groups]))))
  }
  let auto = Dictionary(uniqueKeysWithValues: try GGUFEmitter().layout(m, output: "x").map { ($0.gguf, $0.type) })
  #expect(auto["blk.0.ffn_up.weight"] == .q4_1)
  _ = try crosscheck(m, GGUFEmitter(), tag: "gguf-asym")

  let dir = makeTemporaryDirectory("gguf-refuse")
  defer { removePath(dir) }
  #expect {
    try GGUFEmitter(types: GGUFTypeSelection(defaultType: .q4_0)).emit(m, to: dir + "/out.gguf")
  } throws: { e in
    "\(e)".contains("tensor 'model.layers.0.mlp.down_proj.weight'") && "\(e)".contains("q4_0 has no zero point")  // the first in canonical order
  }
  #expect(listDirectory(dir).isEmpty)
}

/// Group 48 straddles 32-value blocks: refused, naming the tensor.
@Test func ggufRefusesMisalignedGroups() throws {
  let m = SyntheticLlama.make()
  SyntheticLlama.quantizeLinears(m, scheme: IntScheme(bits: 4, symmetric: true, granularity: .group(16), scaleType: .f16), rule: .fullRange)
  #expect {
    try GGUFEmitter(types: GGUFTypeSelection(defaultType: .q4_0)).check(m, output: "out.gguf")
  } throws: { e in "\(e)".contains("group size 16 does not align") }
}

/// Metadata from the module's config attributes and the tokenizer.json blob.
@Test(needsGGUFPy) func ggufMetadataAndTokenizer() throws {
  let m = SyntheticLlama.make(tied: true)
  var vocab: [(String, JSON)] = []
  for i in 0..<250 { vocab.append(("t\(i)", .int(i))) }
  let tok: JSON = .object([
    ("added_tokens", .array([.object([("id", .int(250)), ("content", .string("<|endoftext|>")), ("special", .bool(true))])])),
    ("pre_tokenizer", .object([("type", .string("Sequence")), ("pretokenizers", .array([
      .object([("type", .string("Digits")), ("individual_digits", .bool(true))]), .object([("type", .string("ByteLevel"))]),
    ]))])),
    ("model", .object([("type", .string("BPE")), ("vocab", .object(vocab)), ("merges", .array([.string("t 1"), .string("t 2")]))])),
  ])
  let bytes = Array(tok.serialized.utf8)
  m.weights.set("tokenizer.json", .dense(TensorData(dtype: .u8, shape: [bytes.count], bytes: bytes)))
  m.attributes["bos_token_id"] = .int(250)
  let dir = makeTemporaryDirectory("gguf-meta")
  defer { removePath(dir) }
  try GGUFEmitter(types: GGUFTypeSelection(defaultType: .q8_0)).emit(m, to: dir + "/m.gguf")
  let script = """
    import sys
    from gguf import GGUFReader
    r = GGUFReader(sys.argv[1])
    f = lambda k: r.fields[k].contents()
    assert f('llama.embedding_length') == 64 and f('llama.block_count') == 2
    assert f('llama.attention.head_count') == 4 and f('llama.attention.head_count_kv') == 2
    assert f('llama.rope.dimension_count') == 16 and f('llama.feed_forward_length') == 128
    assert f('general.file_type') == 7 and f('general.quantization_version') == 2
    assert f('tokenizer.ggml.model') == 'gpt2' and f('tokenizer.ggml.pre') == 'smollm'
    toks = f('tokenizer.ggml.tokens'); types = f('tokenizer.ggml.token_type')
    assert len(toks) == 256 and toks[250] == '<|endoftext|>' and toks[255] == '[PAD255]', toks[248:]
    assert types[0] == 1 and types[250] == 3 and types[255] == 5
    assert f('tokenizer.ggml.merges') == ['t 1', 't 2'] and f('tokenizer.ggml.bos_token_id') == 250
    assert r.fields['tokenizer.ggml.bos_token_id'].types[0].name == 'UINT32'
    assert abs(f('llama.attention.layer_norm_rms_epsilon') - 1e-5) < 1e-12
    assert 'output.weight' not in [t.name for t in r.tensors]
    print('ok')
    """
  let python = try #require(TestPython.withGGUF)
  let (status, out) = try runProcess("/usr/bin/env", [python, "-c", script, dir + "/m.gguf"])
  #expect(status == 0 && out.contains("ok"), "\(out)")
}
