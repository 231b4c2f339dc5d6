import QoptFormats
import QoptFrontends
import QoptIR
import QoptTestSupport
import Testing

private let tinyConfig = LlamaConfig(
  modelType: "llama", hiddenSize: 64, intermediateSize: 128, numHiddenLayers: 2, numAttentionHeads: 4,
  numKeyValueHeads: 2, headDim: 16, rmsNormEps: 1e-5, ropeTheta: 10000, vocabSize: 256,
  maxPositionEmbeddings: 2048, tieWordEmbeddings: true)

/// The IR text without `source_type` attributes (they name the checkpoint's storage type).
private func normalized(_ m: Module) -> String {
  for op in m.allOps { op.attributes["source_type"] = nil }
  return m.text
}

private func expectError(_ body: () throws -> Void, contains needles: [String]) {
  do {
    try body()
    Issue.record("expected an error containing \(needles)")
  } catch {
    let text = "\(error)"
    for n in needles { #expect(text.contains(n), "\(text)") }
  }
}

private func configText(_ edit: (inout [(String, JSON)]) -> Void) -> String {
  guard case .object(var pairs) = try! JSON.parse(tinyConfig.configJSON) else { return "" }  // safe: test fixture
  edit(&pairs)
  return JSON.object(pairs).pretty
}

private func setKey(_ pairs: inout [(String, JSON)], _ k: String, _ v: JSON?) {
  pairs.removeAll { $0.0 == k }
  if let v { pairs.append((k, v)) }
}

@Suite struct ImporterTests {
  @Test func ggufImportUndoesQKPermutation() throws {
    let m = ExampleModel.make()
    let dir = TinyCheckpoints.scratchDirectory("tiny-gguf")
    defer { TinyCheckpoints.removeTree(dir) }
    try TinyCheckpoints.writeBytes(TinyCheckpoints.gguf(m).build().bytes, to: dir + "/tiny.gguf")
    let imported = try ModelImporter.load(path: dir + "/tiny.gguf")
    try imported.verify()
    #expect(imported.functions.map(\.name) == ["block.0", "block.1", "main"])
    for name in m.weights.names {
      let a = try #require(m.weights.dense(name)), b = try #require(imported.weights.dense(name))
      #expect(a.floats() == b.floats(), "\(name)")
    }
    let q = try #require(imported.allOps.first { $0.paramName == "model.layers.0.self_attn.q_proj.weight" })
    #expect(q.attributes["source_type"] == .string("f32"))
    #expect(imported.attributes["num_key_value_heads"] == .int(2))
    #expect(imported.attributes["rms_norm_eps"] == .float(1e-5))
  }

  @Test func hfDirectoryImportsToTheSameIRAsGGUF() throws {
    let m = ExampleModel.make()
    let dir = TinyCheckpoints.scratchDirectory("tiny-hf")
    defer { TinyCheckpoints.removeTree(dir) }
    try TinyCheckpoints.writeBytes(TinyCheckpoints.gguf(m).build().bytes, to: dir + "/tiny.gguf")
    try TinyCheckpoints.writeHF(m, configJSON: tinyConfig.configJSON, to: dir + "/hf")
    let fromGGUF = try ModelImporter.load(path: dir + "/tiny.gguf")
    let fromHF = try ModelImporter.load(path: dir + "/hf")
    try fromHF.verify()
    #expect(normalized(fromGGUF) == normalized(fromHF))
    // f32 safetensors weights stay mapped from the checkpoint (no copy).
    let w = try #require(fromHF.weights.dense("model.layers.1.mlp.up_proj.weight"))
    #expect(w.dtype == .f32)
  }

  @Test func shardedCheckpoint() throws {
    let m = ExampleModel.make()
    let dir = TinyCheckpoints.scratchDirectory("sharded")
    defer { TinyCheckpoints.removeTree(dir) }
    let names = m.weights.names
    let half = names.count / 2
    var map: [(String, JSON)] = []
    for (i, part) in [Array(names[..<half]), Array(names[half...])].enumerated() {
      let file = "model-0000\(i + 1)-of-00002.safetensors"
      try SafetensorsWriter.write(part.map { SafetensorsEntry(name: $0, data: m.weights.dense($0)!) }, to: dir + "/" + file)
      map += part.map { ($0, .string(file)) }
    }
    try TinyCheckpoints.writeBytes(Array(JSON.object([("metadata", .object([])), ("weight_map", .object(map))]).serialized.utf8), to: dir + "/model.safetensors.index.json")
    try TinyCheckpoints.writeBytes(Array(tinyConfig.configJSON.utf8), to: dir + "/config.json")
    let imported = try HFImporter.importModel(directory: dir)
    try imported.verify()
    #expect(imported.weights.dense("model.norm.weight")?.floats() == m.weights.dense("model.norm.weight")?.floats())
  }

  @Test func bf16WeightsAreConvertedAndRecorded() throws {
    let m = ExampleModel.make()
    let dir = TinyCheckpoints.scratchDirectory("bf16")
    defer { TinyCheckpoints.removeTree(dir) }
    try SafetensorsWriter.write(m.weights.names.map { n in
      let t = m.weights.dense(n)!
      return SafetensorsEntry(name: n, data: TensorData(floats: t.floats(), shape: t.shape, as: .bf16))
    }, to: dir + "/model.safetensors")
    try TinyCheckpoints.writeBytes(Array(tinyConfig.configJSON.utf8), to: dir + "/config.json")
    let imported = try HFImporter.importModel(directory: dir)
    let op = try #require(imported.allOps.first { $0.paramName == "model.norm.weight" })
    #expect(op.attributes["source_type"] == .string("bf16"))
    #expect(op.result?.type.element == .plain(.f32))
  }

  @Test func qwen2BiasesAndLlama3Rope() throws {
    let m = ExampleModel.make()
    for b in 0..<2 {
      for p in ["q_proj", "k_proj", "v_proj"] {
        let rows = m.weights.dense("model.layers.\(b).self_attn.\(p).weight")!.shape[0]
        m.weights.set("model.layers.\(b).self_attn.\(p).bias", .dense(TensorData(floats: [Float](repeating: 0.5, count: rows), shape: [rows])))
      }
    }
    let dir = TinyCheckpoints.scratchDirectory("qwen2")
    defer { TinyCheckpoints.removeTree(dir) }
    let cfg = configText { p in
      setKey(&p, "model_type", .string("qwen2"))
      setKey(&p, "rope_scaling", .object([("rope_type", .string("llama3")), ("factor", .double(8)), ("low_freq_factor", .double(1)), ("high_freq_factor", .double(4)), ("original_max_position_embeddings", .int(8192))]))
    }
    try TinyCheckpoints.writeHF(m, configJSON: cfg, to: dir)
    let imported = try HFImporter.importModel(directory: dir)
    try imported.verify()
    let q = try #require(imported.function(named: "block.0")?.body.first { $0.result?.name == "q" })
    #expect(q.operands.count == 3)
    let o = try #require(imported.function(named: "block.0")?.body.first { $0.result?.name == "o" })
    #expect(o.operands.count == 2)
    let rope = try #require(imported.allOps.first { $0.kind == .rope })
    #expect(rope.attributes["rope_type"] == .string("llama3"))
    #expect(rope.attributes["factor"] == .float(8))
    #expect(rope.attributes["original_max_position_embeddings"] == .int(8192))
  }

  @Test func untiedLMHead() throws {
    let m = ExampleModel.make()
    m.weights.set("lm_head.weight", .dense(TensorData(floats: [Float](repeating: 0.01, count: 256 * 64), shape: [256, 64])))
    let dir = TinyCheckpoints.scratchDirectory("untied")
    defer { TinyCheckpoints.removeTree(dir) }
    try TinyCheckpoints.writeHF(m, configJSON: configText { setKey(&$0, "tie_word_embeddings", .bool(false)) }, to: dir)
    let imported = try HFImporter.importModel(directory: dir)
    #expect(imported.allOps.contains { $0.paramName == "lm_head.weight" })
  }

  // MARK: - Bad inputs: each error names the file and a key or byte offset.

  @Test func configMissingKey() throws {
    let dir = TinyCheckpoints.scratchDirectory("nokey")
    defer { TinyCheckpoints.removeTree(dir) }
    try TinyCheckpoints.writeHF(ExampleModel.make(), configJSON: configText { setKey(&$0, "hidden_size", nil) }, to: dir)
    expectError({ _ = try HFImporter.importModel(directory: dir) }, contains: [dir + "/config.json", "key 'hidden_size'", "llama, mistral, qwen2"])
  }

  @Test func unsupportedModelTypeAndRopeScaling() throws {
    let dir = TinyCheckpoints.scratchDirectory("badtype")
    defer { TinyCheckpoints.removeTree(dir) }
    try TinyCheckpoints.writeHF(ExampleModel.make(), configJSON: configText { setKey(&$0, "model_type", .string("gpt2")) }, to: dir)
    expectError({ _ = try HFImporter.importModel(directory: dir) }, contains: ["key 'model_type'", "'gpt2'", "llama, mistral, qwen2"])
    try TinyCheckpoints.writeBytes(Array(configText { setKey(&$0, "rope_scaling", .object([("rope_type", .string("yarn")), ("factor", .double(4))])) }.utf8), to: dir + "/config.json")
    expectError({ _ = try HFImporter.importModel(directory: dir) }, contains: ["rope_scaling.rope_type", "'yarn'"])
  }

  @Test func missingTensorNamesTheKey() throws {
    let m = ExampleModel.make()
    m.weights.remove("model.layers.1.mlp.down_proj.weight")
    let dir = TinyCheckpoints.scratchDirectory("missing")
    defer { TinyCheckpoints.removeTree(dir) }
    try TinyCheckpoints.writeHF(m, configJSON: tinyConfig.configJSON, to: dir)
    expectError({ _ = try HFImporter.importModel(directory: dir) }, contains: [dir, "model.layers.1.mlp.down_proj.weight"])
  }

  /// A single-tensor checkpoint whose safetensors bytes are `bytes`.
  private func badSafetensors(_ bytes: [UInt8], _ needles: [String]) throws {
    let dir = TinyCheckpoints.scratchDirectory("badst")
    defer { TinyCheckpoints.removeTree(dir) }
    try TinyCheckpoints.writeBytes(Array(tinyConfig.configJSON.utf8), to: dir + "/config.json")
    try TinyCheckpoints.writeBytes(bytes, to: dir + "/model.safetensors")
    expectError({ _ = try HFImporter.importModel(directory: dir) }, contains: [dir + "/model.safetensors:@"] + needles)
  }

  private func st(_ header: String, data: Int) -> [UInt8] {
    var n = UInt64(header.utf8.count).littleEndian
    return withUnsafeBytes(of: &n) { Array($0) } + Array(header.utf8) + [UInt8](repeating: 0, count: data)
  }

  @Test func safetensorsBadInputs() throws {
    var tooLong = st(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: 4)
    tooLong[0] = 0xF0
    try badSafetensors(tooLong, ["past the end"])
    try badSafetensors(st("{not json", data: 0), ["not valid JSON"])
    try badSafetensors(st(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: 4), ["run past the end"])
    try badSafetensors(st(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: 12), ["overlaps"])
    try badSafetensors(st(#"{"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#, data: 8), ["unsupported dtype 'Q9'"])
    try badSafetensors(st(#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: 8), ["needs 12 bytes"])
  }
}
