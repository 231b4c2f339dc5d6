import QoptFormats
import QoptIR

/// `tokenizer.*` metadata (reference/gguf.md §5), from whichever source the module carries:
///
/// 1. module attributes named `tokenizer.ggml.*` / `tokenizer.chat_template`, written back with
///    their GGUF types;
/// 2. else a `tokenizer.gguf` blob — the source GGUF's own `tokenizer.*` records, which the GGUF
///    importer keeps (`GGUFTokenizerRecords`) — copied record for record (`RawMetadata`);
/// 3. else a `tokenizer.json` blob (byte-level BPE → `gpt2`), with special tokens and the chat
///    template from a `tokenizer_config.json` blob;
/// 4. else nothing (the file is still valid GGUF; llama.cpp then needs a vocabulary elsewhere).
public enum TokenizerMetadata {
  static func make(_ module: Module, config: ModelConfig, output: String) throws(BackendError) -> (values: [(String, GGUFValue)], raw: RawMetadata?) {
    let carried = module.attributes.filter { $0.key.hasPrefix("tokenizer.") }
    if !carried.isEmpty { return (carried.compactMap { k, v in value(v, key: k).map { (k, $0) } }, nil) }
    if let blob = module.weights.dense(GGUFTokenizerRecords.blobName) {
      let name = GGUFTokenizerRecords.blobName
      return ([], try RawMetadata(ggufWithoutTensors: blob.bytes, file: output, blob: name))
    }
    guard let blob = module.weights.dense("tokenizer.json") else { return ([], nil) }
    let values = try fromTokenizerJSON(blob.bytes, tokenizerConfig: module.weights.dense("tokenizer_config.json")?.bytes,
                                       chatTemplate: module.weights.dense("chat_template.jinja")?.bytes, config: config, output: output)
    return (values, nil)
  }

  /// The GGUF type of a carried tokenizer key: ids u32, token types i32, scores f32.
  static func value(_ a: Attribute, key: String) -> GGUFValue? {
    switch a {
    case .int(let v):
      if key.hasSuffix("_token_id") || v >= 0 { return .u32(UInt32(truncatingIfNeeded: v)) }
      return .i32(Int32(truncatingIfNeeded: v))
    case .float(let v): return .f32(Float(v))
    case .bool(let v): return .bool(v)
    case .string(let v), .symbol(let v): return .string(v)
    case .array(let xs):
      if key.hasSuffix("token_type") { return .array(elementType: 5, xs.map { .i32(Int32(truncatingIfNeeded: $0.intValue ?? 0)) }) }
      if key.hasSuffix("scores") { return .array(elementType: 6, xs.map { .f32(Float($0.doubleValue ?? 0)) }) }
      if xs.allSatisfy({ $0.stringValue != nil }) { return .strings(xs.compactMap(\.stringValue)) }
      if xs.allSatisfy({ $0.intValue != nil }) { return .array(elementType: 5, xs.map { .i32(Int32(truncatingIfNeeded: $0.intValue ?? 0)) }) }
      return .array(elementType: 6, xs.map { .f32(Float($0.doubleValue ?? 0)) })
    case .type: return nil
    }
  }

  static func fromTokenizerJSON(
    _ bytes: [UInt8], tokenizerConfig: [UInt8]?, chatTemplate: [UInt8]?, config: ModelConfig, output: String
  ) throws(BackendError) -> [(String, GGUFValue)] {
    func fail(_ m: String) -> BackendError { BackendError(output: output, tensor: "tokenizer.json", m) }
    let tok: JSON
    do { tok = try JSON.parse(bytes) } catch { throw fail("not valid JSON: \(error)") }
    guard let model = tok["model"], model["type"]?.stringValue == "BPE", let vocab = model["vocab"]?.objectPairs else {
      throw fail("only byte-level BPE tokenizers (model.type \"BPE\") convert to GGUF here")
    }
    guard model["byte_fallback"]?.boolValue != true else {
      throw fail("SentencePiece-style BPE (byte_fallback) needs tokenizer.model scores; not supported")
    }
    var byID: [Int: (String, Int32)] = [:]
    for (t, id) in vocab { if let i = id.intValue { byID[i] = (t, 1) } }
    for a in tok["added_tokens"]?.arrayValue ?? [] {
      guard let i = a["id"]?.intValue, let c = a["content"]?.stringValue else { continue }
      byID[i] = (c, a["special"]?.boolValue == true ? 3 : 4)
    }
    let count = max(config.int("vocab_size") ?? 0, (byID.keys.max() ?? -1) + 1)
    var tokens: [String] = []
    var types: [GGUFValue] = []
    tokens.reserveCapacity(count)
    for i in 0..<count {
      let (t, ty) = byID[i] ?? ("[PAD\(i)]", 5)
      tokens.append(t)
      types.append(.i32(ty))
    }
    var merges: [String] = []
    for m in model["merges"]?.arrayValue ?? [] {
      if let s = m.stringValue {
        merges.append(s)
      } else if let pair = m.arrayValue, pair.count == 2, let a = pair[0].stringValue, let b = pair[1].stringValue {
        merges.append(spaced(a) + " " + spaced(b))
      }
    }
    let pre = preTokenizerID(tok["pre_tokenizer"], name: config.string("_name_or_path") ?? "")
    var kv: [(String, GGUFValue)] = [
      ("tokenizer.ggml.model", .string("gpt2")),
      ("tokenizer.ggml.pre", .string(pre)),
      ("tokenizer.ggml.tokens", .strings(tokens)),
      ("tokenizer.ggml.token_type", .array(elementType: 5, types)),
      ("tokenizer.ggml.merges", .strings(merges)),
    ]
    let tc = tokenizerConfig.flatMap { try? JSON.parse($0) }
    func tokenID(_ key: String) -> Int? {
      let v = tc?[key]
      let text = v?.stringValue ?? v?["content"]?.stringValue
      if let text, let i = tokens.firstIndex(of: text) { return i }
      return nil
    }
    for (k, tcKey, cfgKey) in [
      ("bos_token_id", "bos_token", "bos_token_id"), ("eos_token_id", "eos_token", "eos_token_id"),
      ("unknown_token_id", "unk_token", ""), ("padding_token_id", "pad_token", "pad_token_id"),
    ] {
      if let i = tokenID(tcKey) ?? config.int(cfgKey), i >= 0 { kv.append(("tokenizer.ggml." + k, .u32(UInt32(i)))) }
    }
    kv.append(("tokenizer.ggml.add_bos_token", .bool(tc?["add_bos_token"]?.boolValue ?? false)))
    kv.append(("tokenizer.ggml.add_space_prefix", .bool(false)))
    if let t = tc?["chat_template"]?.stringValue ?? chatTemplate.map({ String(decoding: $0, as: UTF8.self) }) {
      kv.append(("tokenizer.chat_template", .string(t)))
    }
    return kv
  }

  /// llama.cpp's `tokenizer.ggml.pre` id for a tokenizer.json pre-tokenizer: the inverse of the
  /// frontend's table (Digits + ByteLevel → `smollm`, Split with llama-3's pattern →
  /// `llama-bpe`, another Split → `qwen2`, plain ByteLevel → `gpt2`).
  static func preTokenizerID(_ p: JSON?, name: String) -> String {
    guard let p, p != .null else { return "default" }
    if p["type"]?.stringValue == "ByteLevel" { return name.lowercased().contains("smollm") ? "smollm" : "gpt2" }
    let parts = p["pretokenizers"]?.arrayValue ?? []
    let types = parts.compactMap { $0["type"]?.stringValue }
    if types == ["Digits", "ByteLevel"] { return "smollm" }
    if types.first == "Split", let re = parts[0]["pattern"]?["Regex"]?.stringValue {
      return re.contains("{1,3}") ? "llama-bpe" : "qwen2"
    }
    return "default"
  }

  /// A merge part with literal spaces written as U+0120, as the converter does.
  private static func spaced(_ s: String) -> String {
    String(s.unicodeScalars.map { $0 == " " ? "\u{0120}" : Character($0) })
  }
}
