import QoptFormats
import QoptFrontends
import QoptIR
import Testing

/// A tiny byte-level BPE tokenizer.json: every byte, plus merges for "Ġt", "he", "Ġthe".
private func tinyTokenizer(pre: String, added: String = "[]") -> [UInt8] {
  var vocab: [(String, JSON)] = []
  // GPT-2 byte→unicode map (printable bytes as themselves, others from U+0100).
  var n: UInt32 = 0
  for b in 0..<256 {
    let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
    let u = printable ? UInt32(b) : 256 + n
    if !printable { n += 1 }
    vocab.append((String(Character(Unicode.Scalar(u)!)), .int(b)))
  }
  vocab += [("Ġt", .int(256)), ("he", .int(257)), ("Ġthe", .int(258)), ("<|end|>", .int(259))]
  let json = """
    {"added_tokens": \(added), "normalizer": null, "pre_tokenizer": \(pre),
     "model": {"type": "BPE", "vocab": \(JSON.object(vocab).serialized), "merges": ["Ġ t", ["h", "e"], "Ġt he"]}}
    """
  return Array(json.utf8)
}

private let byteLevel = #"{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}"#
private let smollm = #"{"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, \#(byteLevel)]}"#

@Suite struct TokenizerTests {
  @Test func mergesByRank() throws {
    let t = try Tokenizer(json: tinyTokenizer(pre: byteLevel), file: "t.json")
    #expect(t.encode(" the") == [258])
    #expect(t.encode("the the") == [116, 257, 258])
    #expect(t.encode("") == [])
  }

  @Test func digitsAreSplitIndividually() throws {
    let t = try Tokenizer(json: tinyTokenizer(pre: smollm), file: "t.json")
    #expect(t.encode("a12") == [97, 49, 50])
    // Space before a digit stays its own piece: "Ġ" is byte 0x20's token (id 32).
    #expect(t.encode(" 1") == [32, 49])
  }

  @Test func addedTokensAreCutFirst() throws {
    let added = #"[{"id": 259, "content": "<|end|>", "special": true}]"#
    let t = try Tokenizer(json: tinyTokenizer(pre: byteLevel, added: added), file: "t.json")
    #expect(t.encode("the<|end|> the") == [116, 257, 259, 258])
  }

  @Test func gpt2SplitRules() throws {
    let t = try Tokenizer(json: tinyTokenizer(pre: byteLevel), file: "t.json")
    // "  the": the first space stays alone (\s+(?!\S)), the second joins "the".
    #expect(t.encode("  the") == [32, 258])
    // Contractions split off: "it's" → "it", "'s".
    #expect(t.encode("it's") == [105, 116, 39, 115])
  }

  @Test func tokenizerWithoutModelIsAnError() {
    do {
      _ = try Tokenizer(json: Array(#"{"added_tokens": []}"#.utf8), file: "x/tokenizer.json")
      Issue.record("expected an error")
    } catch {
      #expect(error.description.contains("x/tokenizer.json"))
      #expect(error.description.contains("key 'model'"))
    }
  }

  @Test func unknownSplitPatternIsAnError() {
    let pre = #"{"type": "Split", "pattern": {"Regex": "[a-z]+"}, "behavior": "Isolated"}"#
    do {
      _ = try Tokenizer(json: tinyTokenizer(pre: pre), file: "t.json")
      Issue.record("expected an error")
    } catch {
      #expect(error.description.contains("pre_tokenizer.pattern"))
    }
  }
}
