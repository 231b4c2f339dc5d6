/// Ids back to text for a byte-level BPE tokenizer: each id's vocabulary string (added tokens
/// as written), byte-level characters mapped back to their bytes, UTF-8 decoded with invalid
/// sequences replaced (a multi-byte character split across tokens reads whole once both are in).
public struct TokenDecoder {
  /// The bytes of each id; nil for ids the tokenizer does not define.
  let bytes: [[UInt8]?]

  public init(_ tokenizer: Tokenizer) {
    var table = [[UInt8]?](repeating: nil, count: tokenizer.vocabularySize)
    var inverse: [Unicode.Scalar: UInt8] = [:]
    for (b, c) in ByteLevel.chars.enumerated() { inverse[c] = UInt8(b) }
    for (s, id) in tokenizer.model.vocab where Int(id) < table.count {
      var out: [UInt8] = []
      for u in s.unicodeScalars {
        if let b = inverse[u] { out.append(b) } else { out.append(contentsOf: UTF8.encode(u)!) }  // safe: a scalar always encodes
      }
      table[Int(id)] = out
    }
    for list in tokenizer.added.values {
      for (content, id) in list where Int(id) < table.count {
        var out: [UInt8] = []
        for u in content { out.append(contentsOf: UTF8.encode(u)!) }  // safe: as above
        table[Int(id)] = out
      }
    }
    bytes = table
  }

  /// The text of `ids` (unknown ids read as U+FFFD).
  public func decode(_ ids: [Int32]) -> String {
    var out: [UInt8] = []
    for id in ids {
      if id >= 0, Int(id) < bytes.count, let b = bytes[Int(id)] { out += b } else { out += [0xEF, 0xBF, 0xBD] }
    }
    return String(decoding: out, as: UTF8.self)
  }
}
