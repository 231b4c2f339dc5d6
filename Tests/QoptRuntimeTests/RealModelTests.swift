import QoptBackends
import QoptFormats
import QoptFrontends
import QoptIR
import QoptRuntime
import QoptTestSupport
import Testing

/// End-to-end checks on the shared SmolLM2-135M GGUF (../shared beside the checkout). They
/// fail, loudly, when the shared folder is missing.
private let shared: String = {
  let file = "\(#filePath)"
  let root = file.split(separator: "/", omittingEmptySubsequences: false).dropLast(3).joined(separator: "/")
  return root + "/../shared"
}()
private let ggufPath = shared + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"

private func requireShared() throws {
  try #require(fileExists(ggufPath), "missing \(ggufPath): the real-model tests need ../shared beside the checkout")
}

private func referenceIds(_ name: String) throws -> [Int] {
  let j = try JSON.parse(try readFile(shared + "/data/\(name).tokens.json"))
  return try #require(j.arrayValue).compactMap(\.intValue)
}

@Suite(.serialized) struct RealModelTests {
  @Test func realModelImportCounts() throws {
    try requireShared()
    let m = try ModelImporter.load(path: ggufPath)
    try m.verify()
    #expect(m.functions.filter { $0.name.hasPrefix("block.") }.count == 30)
    var params = 0
    var seen = Set<String>()
    for op in m.allOps { if let n = op.paramName, seen.insert(n).inserted { params += op.result?.type.elementCount ?? 0 } }
    #expect(params == 134_515_008)
    #expect(m.attributes["num_key_value_heads"] == .int(3))
    #expect(m.attributes["rope_theta"] == .float(100000))
  }

  /// llama-forward.md §9.5/§9.6 logits for "The capital of France is".
  @Test func realModelLogits() throws {
    try requireShared()
    BLAS.setThreads(2)
    let m = try ModelImporter.load(path: ggufPath)
    let logits = try Interpreter(module: m).run(ids: [504, 3575, 282, 4649, 314])
    let v = logits.columns
    func row(_ p: Int) -> [Float] { Array(logits.data[(p * v)..<((p + 1) * v)]) }
    func top5(_ r: [Float]) -> [Int] { Array(r.indices.sorted { r[$0] > r[$1] }.prefix(5)) }
    let r4 = row(4), r0 = row(0)
    #expect(top5(r4) == [7042, 260, 4528, 2250, 1315])
    #expect(top5(r0) == [29, 28, 198, 79, 506])
    let expected: [(Float, Float)] = [
      (r4[7042], 17.3713), (r4[260], 14.8886), (r4[4528], 13.2450), (r4[2250], 13.0095), (r4[1315], 12.9515),
      (r4[0], 1.6136), (r4[1], -11.8719), (r4[2], -7.9445), (r4[3], -9.3469), (r4[4], -10.0852),
      (r0[29], 27.3534), (r0[28], 25.5656), (r0[198], 25.0673), (r0[79], 24.9147), (r0[506], 24.6982),
      (r0[0], 15.6553), (r0[1], 6.8245), (r0[2], 10.5912), (r0[3], 5.1095), (r0[4], 6.5944),
    ]
    for (got, want) in expected { #expect(abs(got - want) < 2e-3, "\(got) vs \(want)") }
    let mean = r4.reduce(0.0) { $0 + Double($1) } / Double(v)
    #expect(abs(mean - -1.8583) < 2e-3)
  }

  @Test func realModelTokenizerMatchesReferenceIds() throws {
    try requireShared()
    let m = try ModelImporter.load(path: ggufPath)
    let tok = try Tokenizer(module: m)
    for name in ["calib", "dev_eval"] {
      let text = String(decoding: try readFile(shared + "/data/\(name).txt"), as: UTF8.self)
      let ids = tok.encode(text).map(Int.init)
      let ref = try referenceIds(name)
      #expect(ids.count == ref.count, "\(name)")
      if let i = zip(ids, ref).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
        Issue.record("\(name): first difference at token \(i): \(ids[i]) vs \(ref[i])")
      }
    }
  }

  /// The GGUF's weights written as an HF directory (qopt's own writer + config.json rebuilt
  /// from the module attributes + the tokenizer.json) import to the same IR; and the `.ir` +
  /// sidecar round trip keeps text, tensors and tokenizer.
  @Test func realModelHFDirectoryAndIRRoundTrip() throws {
    try requireShared()
    let m = try ModelImporter.load(path: ggufPath)
    let config = try #require(LlamaConfig(attributes: m.attributes))
    let dir = TinyCheckpoints.scratchDirectory("smol-hf")
    defer { TinyCheckpoints.removeTree(dir) }
    try TinyCheckpoints.writeHF(m, configJSON: config.configJSON, to: dir, tokenizer: m.tokenizerJSON)
    let hf = try ModelImporter.load(path: dir)
    try hf.verify()
    // Provenance differs by design: params say where their bytes came from (`source_type`)
    // and a GGUF import carries its `general.*` identity and its own tokenizer records
    // (`tokenizer_gguf`); the model itself must be identical.
    // …and the serving files it builds from its tokenizer records (tokenizer_config.json,
    // generation_config.json), which the HF directory written here does not have.
    let servingFiles: Set<String> = ["tokenizer_config", "generation_config"]
    func strip(_ x: Module) -> String {
      for op in x.allOps { op.attributes["source_type"] = nil }
      for k in x.attributes.keys where k.hasPrefix("general.") || k == "tokenizer_gguf" || servingFiles.contains(k) { x.attributes[k] = nil }
      return x.text
    }
    let hfText = strip(hf)
    let again = try ModelImporter.load(path: ggufPath)
    #expect(hfText == strip(again))
    // A GGUF import also keeps the source's tokenizer records (`tokenizer.gguf`) for GGUF output;
    // an HF directory has tokenizer.json only.
    #expect(m.weights.dense(GGUFTokenizerRecords.blobName) != nil)
    for name in m.weights.names where name != GGUFTokenizerRecords.blobName && !servingFiles.contains(where: { name == $0 + ".json" }) {
      let a = try #require(m.weights.dense(name)), b = try #require(hf.weights.dense(name))
      #expect(a.isIdentical(to: b), "\(name)")
    }
    try ModuleIO.save(hf, to: dir + "/model.ir")
    let back = try ModuleIO.load(path: dir + "/model.ir")
    try back.verify()
    #expect(strip(back) == hfText)
    #expect(back.tokenizerJSON == m.tokenizerJSON)
    #expect(back.weights.dense("model.layers.29.mlp.down_proj.weight")?.isIdentical(to: m.weights.dense("model.layers.29.mlp.down_proj.weight")!) == true)
  }

  /// anchors.md: float32 perplexity 43.345 on dev_eval.txt, 40×512 windows (within 0.1 %).
  /// Minutes on a 2-core machine; also `scripts/check-perplexity.sh`.
  @Test func realModelPerplexity() throws {
    try requireShared()
    BLAS.setThreads(2)
    let m = try ModelImporter.load(path: ggufPath)
    let ids = try referenceIds("dev_eval").map { Int32($0) }
    let r = try Perplexity.evaluate(Interpreter(module: m), ids: ids, seqlen: 512, windows: 40)
    #expect(r.predictedTokens == 20440)
    #expect(abs(r.ppl / 43.345 - 1) < 0.001, "ppl \(r.ppl)")
  }
}
