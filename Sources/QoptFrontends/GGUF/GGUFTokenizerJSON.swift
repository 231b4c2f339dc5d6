import QoptFormats
import QoptIR

/// Builds a Hugging Face tokenizer.json from a GGUF's `tokenizer.ggml.*` keys, so one
/// tokenizer loader (tokenizer.json) serves both frontends and the `.ir` sidecar carries the
/// tokenizer in the form a compressed-tensors backend copies out.
///
/// Only byte-level BPE (`tokenizer.ggml.model = "gpt2"`) is synthesized; the pre-tokenizer
/// follows `tokenizer.ggml.pre` the way llama.cpp maps it. A file that already embeds
/// `tokenizer.huggingface.json` is used verbatim. Other tokenizer models return nil (the model
/// still imports; evaluation then needs a token-id file).
public enum GGUFTokenizerJSON {
  public static func synthesize(_ g: GGUFFile) throws(FrontendError) -> [UInt8]? {
    if let s = g["tokenizer.huggingface.json"]?.stringValue { return Array(s.utf8) }
    guard g["tokenizer.ggml.model"]?.stringValue == "gpt2" else { return nil }
    func fail(_ key: String, _ m: String) -> FrontendError {
      FrontendError(file: g.path, offset: g.offset(ofKey: key), "metadata '\(key)': \(m)")
    }
    guard let tokens = g["tokenizer.ggml.tokens"]?.arrayValue else {
      throw FrontendError(file: g.path, key: "tokenizer.ggml.tokens", "missing (needed for a gpt2 tokenizer)")
    }
    guard let merges = g["tokenizer.ggml.merges"]?.arrayValue else {
      throw FrontendError(file: g.path, key: "tokenizer.ggml.merges", "missing (needed for a gpt2 tokenizer)")
    }
    let types = g["tokenizer.ggml.token_type"]?.arrayValue
    let pre = g["tokenizer.ggml.pre"]?.stringValue ?? "default"
    guard let preTokenizer = preTokenizer(pre) else {
      throw fail("tokenizer.ggml.pre", "pre-tokenizer '\(pre)' is not supported (supported: \(supportedPre.joined(separator: ", ")))")
    }
    var vocab: [String] = []
    var added: [JSON] = []
    vocab.reserveCapacity(tokens.count)
    for (i, t) in tokens.enumerated() {
      guard let s = t.stringValue else { throw fail("tokenizer.ggml.tokens", "entry \(i) is not a string") }
      vocab.append(s)
      let type = types.flatMap { i < $0.count ? $0[i].intValue : nil } ?? 1
      if type == 3 || type == 4 {
        added.append(.object([
          ("id", .int(i)), ("content", .string(s)), ("single_word", .bool(false)), ("lstrip", .bool(false)),
          ("rstrip", .bool(false)), ("normalized", .bool(type == 4)), ("special", .bool(type == 3)),
        ]))
      }
    }
    var mergeList: [String] = []
    mergeList.reserveCapacity(merges.count)
    for (i, m) in merges.enumerated() {
      guard let s = m.stringValue else { throw fail("tokenizer.ggml.merges", "entry \(i) is not a string") }
      mergeList.append(s)
    }
    let byteLevelDecoder: JSON = .object([
      ("type", .string("ByteLevel")), ("add_prefix_space", .bool(true)), ("trim_offsets", .bool(true)),
      ("use_regex", .bool(true)),
    ])
    let json: JSON = .object([
      ("version", .string("1.0")), ("truncation", .null), ("padding", .null),
      ("added_tokens", .array(added)), ("normalizer", .null), ("pre_tokenizer", preTokenizer),
      ("post_processor", .null), ("decoder", byteLevelDecoder),
      ("model", .object([
        ("type", .string("BPE")), ("dropout", .null), ("unk_token", .null),
        ("continuing_subword_prefix", .null), ("end_of_word_suffix", .null), ("fuse_unk", .bool(false)),
        ("byte_fallback", .bool(false)), ("ignore_merges", .bool(pre == "llama-bpe" || pre == "llama3")),
      ])),
    ])
    // "vocab" and "merges" (~10^5 strings) go straight to bytes after the rest: "model" is the
    // last key of the outer object, so they are appended inside its closing "}}" — the bytes the
    // tree serializer would give, without building ~10^5 JSON values first.
    var out = json.serializedBytes
    out.removeLast(2)
    out.reserveCapacity(out.count + vocab.count * 16 + mergeList.count * 14 + 32)
    out += #","vocab":{"#.utf8
    for (i, t) in vocab.enumerated() {
      if i > 0 { out.append(UInt8(ascii: ",")) }
      JSON.appendQuoted(t, to: &out)
      out.append(UInt8(ascii: ":"))
      JSON.appendInt(i, to: &out)
    }
    out += #"},"merges":["#.utf8
    for (i, m) in mergeList.enumerated() {
      if i > 0 { out.append(UInt8(ascii: ",")) }
      JSON.appendQuoted(m, to: &out)
    }
    out += "]}}".utf8
    return out
  }

  static let supportedPre = ["default", "gpt-2", "gpt2", "smollm", "starcoder", "refact", "llama-bpe", "llama3", "qwen2"]

  static func byteLevel(regex: Bool) -> JSON {
    .object([
      ("type", .string("ByteLevel")), ("add_prefix_space", .bool(false)), ("trim_offsets", .bool(true)),
      ("use_regex", .bool(regex)),
    ])
  }

  static func split(_ pattern: String) -> JSON {
    .object([
      ("type", .string("Split")), ("pattern", .object([("Regex", .string(pattern))])),
      ("behavior", .string("Isolated")), ("invert", .bool(false)),
    ])
  }

  /// The pre-tokenizer of a `tokenizer.ggml.pre` id, as the model's own tokenizer.json has it.
  static func preTokenizer(_ pre: String) -> JSON? {
    switch pre {
    case "default", "gpt-2", "gpt2":
      return byteLevel(regex: true)
    case "smollm", "starcoder", "refact":
      return .object([
        ("type", .string("Sequence")),
        ("pretokenizers", .array([
          .object([("type", .string("Digits")), ("individual_digits", .bool(true))]), byteLevel(regex: true),
        ])),
      ])
    case "llama-bpe", "llama3":
      return .object([
        ("type", .string("Sequence")),
        ("pretokenizers", .array([split(PreTokenizerPatterns.llama3), byteLevel(regex: false)])),
      ])
    case "qwen2":
      return .object([
        ("type", .string("Sequence")),
        ("pretokenizers", .array([split(PreTokenizerPatterns.qwen2), byteLevel(regex: false)])),
      ])
    default:
      return nil
    }
  }
}
