import QoptIR

/// A tokenizer problem without a file location yet (the loader adds the file).
struct TokenizerError: Error {
  var message: String
  init(_ m: String) { message = m }
}

/// A byte-level BPE tokenizer (GPT-2, SmolLM2, Llama 3, Qwen2) read from tokenizer.json.
///
/// Encoding follows Hugging Face `tokenizers`: added tokens are cut out of the raw text
/// first (leftmost, longest), the rest goes through the pre-tokenizer pipeline (`Digits`,
/// `Split` with a known pattern, `ByteLevel`), and each piece through the BPE model. No BOS or
/// EOS is added (qopt's perplexity protocol wants none).
public struct Tokenizer {
  enum PreStep {
    case digits(individual: Bool)
    case split(PreTokenizerPatterns.Kind)
    /// Byte-level mapping; with `regex` it also splits with the GPT-2 pattern.
    case byteLevel(regex: Bool, prefixSpace: Bool)
  }

  let model: BPEModel
  let steps: [PreStep]
  /// Added tokens by their first scalar, longest first.
  let added: [Unicode.Scalar: [(content: [Unicode.Scalar], id: Int32)]]
  public let vocabularySize: Int

  /// Parses tokenizer.json bytes; `file` names the source in errors.
  public init(json bytes: [UInt8], file: String) throws(FrontendError) {
    let root: JSON
    do { root = try JSON.parse(bytes) } catch {
      throw FrontendError(file: file, offset: error.offset, "tokenizer.json is not valid JSON: \(error.message)")
    }
    func fail(_ key: String, _ m: String) -> FrontendError { FrontendError(file: file, key: key, m) }
    guard let m = root["model"], m.objectPairs != nil else { throw fail("model", "tokenizer.json has no model") }
    guard m["type"]?.stringValue ?? "BPE" == "BPE" else {
      throw fail("model.type", "tokenizer model '\(m["type"]?.stringValue ?? "")' is not supported (supported: BPE)")
    }
    guard let vocabPairs = m["vocab"]?.objectPairs else { throw fail("model.vocab", "missing or not an object") }
    var vocab: [String: Int32] = [:]
    vocab.reserveCapacity(vocabPairs.count)
    var maxId = -1
    for (k, v) in vocabPairs {
      guard let id = v.intValue, id >= 0, id < Int(Int32.max) else { throw fail("model.vocab", "id of '\(k)' is not a valid token id") }
      vocab[k] = Int32(id)
      maxId = max(maxId, id)
    }
    guard let mergeList = m["merges"]?.arrayValue else { throw fail("model.merges", "missing or not an array") }
    var merges: [(String, String)] = []
    merges.reserveCapacity(mergeList.count)
    for (i, e) in mergeList.enumerated() {
      if let s = e.stringValue, let sp = s.firstIndex(of: " ") {
        merges.append((String(s[..<sp]), String(s[s.index(after: sp)...])))
      } else if let a = e.arrayValue, a.count == 2, let l = a[0].stringValue, let r = a[1].stringValue {
        merges.append((l, r))
      } else {
        throw fail("model.merges", "entry \(i) is neither \"a b\" nor [\"a\", \"b\"]")
      }
    }
    do {
      model = try BPEModel(vocab: vocab, merges: merges, ignoreMerges: m["ignore_merges"]?.boolValue ?? false)
    } catch { throw fail("model.merges", error.message) }

    var addedMap: [Unicode.Scalar: [(content: [Unicode.Scalar], id: Int32)]] = [:]
    for t in root["added_tokens"]?.arrayValue ?? [] {
      guard let c = t["content"]?.stringValue, let id = t["id"]?.intValue, let first = c.unicodeScalars.first else {
        throw fail("added_tokens", "every entry needs a non-empty 'content' and an 'id'")
      }
      guard id >= 0, id < Int(Int32.max) else { throw fail("added_tokens", "id \(id) of '\(c)' is not a valid token id") }
      addedMap[first, default: []].append((Array(c.unicodeScalars), Int32(id)))
      maxId = max(maxId, id)
    }
    for k in addedMap.keys { addedMap[k]?.sort { $0.content.count > $1.content.count } }
    added = addedMap
    vocabularySize = maxId + 1

    if let n = root["normalizer"], n != .null {
      throw fail("normalizer", "normalizers are not supported (found type '\(n["type"]?.stringValue ?? "?")')")
    }
    var steps: [PreStep] = []
    func add(_ p: JSON, _ key: String) throws(FrontendError) {
      switch p["type"]?.stringValue {
      case "Sequence"?:
        for (i, q) in (p["pretokenizers"]?.arrayValue ?? []).enumerated() { try add(q, key + ".pretokenizers[\(i)]") }
      case "Digits"?:
        steps.append(.digits(individual: p["individual_digits"]?.boolValue ?? false))
      case "ByteLevel"?:
        steps.append(.byteLevel(regex: p["use_regex"]?.boolValue ?? true, prefixSpace: p["add_prefix_space"]?.boolValue ?? false))
      case "Split"?:
        guard let re = p["pattern"]?["Regex"]?.stringValue ?? p["pattern"]?["String"]?.stringValue else {
          throw fail(key + ".pattern", "missing")
        }
        guard let kind = PreTokenizerPatterns.kind(of: re) else {
          throw fail(key + ".pattern", "split pattern is not one qopt implements (GPT-2, Llama 3, Qwen2)")
        }
        guard p["behavior"]?.stringValue ?? "Isolated" == "Isolated", p["invert"]?.boolValue != true else {
          throw fail(key + ".behavior", "only the Isolated behaviour is supported")
        }
        steps.append(.split(kind))
      case let t:
        throw fail(key, "pre-tokenizer '\(t ?? "?")' is not supported (supported: Sequence, Digits, Split, ByteLevel)")
      }
    }
    if let p = root["pre_tokenizer"], p != .null { try add(p, "pre_tokenizer") }
    guard steps.contains(where: { if case .byteLevel = $0 { true } else { false } }) else {
      throw fail("pre_tokenizer", "a byte-level BPE tokenizer needs a ByteLevel pre-tokenizer")
    }
    self.steps = steps
  }

  /// The tokenizer stored with a module (`Module.tokenizerJSON`).
  public init(module: Module) throws(FrontendError) {
    guard let bytes = module.tokenizerJSON else {
      throw FrontendError(file: module.sourceFile ?? "<module>", key: "tokenizer", "the model carries no tokenizer (import it from a checkpoint with tokenizer.json or a gpt2-tokenizer GGUF)")
    }
    try self.init(json: bytes, file: (module.sourceFile ?? "<module>") + "#tokenizer.json")
  }

  /// Token ids of `text` (no BOS/EOS).
  public func encode(_ text: String) -> [Int32] {
    let s = Array(text.unicodeScalars)
    var out: [Int32] = []
    out.reserveCapacity(s.count / 3)
    var cache: [[UInt8]: [Int32]] = [:]
    var start = 0
    var i = 0
    while i < s.count {
      if let cands = added[s[i]] {
        var hit: (Int, Int32)?
        for c in cands where i + c.content.count <= s.count && s[i..<(i + c.content.count)].elementsEqual(c.content) {
          hit = (c.content.count, c.id)
          break
        }
        if let (n, id) = hit {
          encodePlain(s, start..<i, &out, &cache)
          out.append(id)
          i += n
          start = i
          continue
        }
      }
      i += 1
    }
    encodePlain(s, start..<s.count, &out, &cache)
    return out
  }

  private func encodePlain(_ s: [Unicode.Scalar], _ r: Range<Int>, _ out: inout [Int32], _ cache: inout [[UInt8]: [Int32]]) {
    guard !r.isEmpty else { return }
    var pieces: [[Unicode.Scalar]] = [Array(s[r])]
    for step in steps {
      switch step {
      case .digits(let individual):
        pieces = pieces.flatMap { p -> [[Unicode.Scalar]] in
          var res: [[Unicode.Scalar]] = []
          var i = 0
          while i < p.count {
            var j = i + 1
            if isNumber(p[i]) {
              if !individual { while j < p.count && isNumber(p[j]) { j += 1 } }
            } else {
              while j < p.count && !isNumber(p[j]) { j += 1 }
            }
            res.append(Array(p[i..<j]))
            i = j
          }
          return res
        }
      case .split(let kind):
        pieces = pieces.flatMap { p in kind.split(p).map { Array(p[$0]) } }
      case .byteLevel(let regex, let prefixSpace):
        if prefixSpace, let f = pieces.first, f.first != " " { pieces[0] = [" "] + f }
        if regex { pieces = pieces.flatMap { p in PreTokenizerPatterns.Kind.gpt2.split(p).map { Array(p[$0]) } } }
      }
    }
    for p in pieces {
      var bytes: [UInt8] = []
      for u in p { bytes.append(contentsOf: UTF8.encode(u)!) }  // safe: a scalar always encodes
      if let ids = cache[bytes] {
        out.append(contentsOf: ids)
        continue
      }
      var ids: [Int32] = []
      // A byte missing from the vocabulary cannot happen for the byte-level vocabularies
      // this loader accepts; skip the piece rather than trap if one does.
      try? model.encode(bytes, into: &ids)
      cache[bytes] = ids
      out.append(contentsOf: ids)
    }
  }
}
