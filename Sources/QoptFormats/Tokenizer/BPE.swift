/// A byte-level BPE model: vocabulary and ranked merges, applied to one pre-token at a time
/// the way Hugging Face `tokenizers` does (repeatedly merge the lowest-ranked adjacent pair,
/// leftmost first). Symbols are token ids, so a merge is one dictionary lookup.
struct BPEModel {
  /// Merge of (left id, right id) → (rank, merged id).
  let merges: [UInt64: (rank: Int32, id: Int32)]
  let vocab: [String: Int32]
  /// The id of each byte's byte-level character (-1 when the vocabulary lacks it).
  let byteIds: [Int32]
  let ignoreMerges: Bool

  init(vocab: [String: Int32], merges: [(String, String)], ignoreMerges: Bool) throws(TokenizerError) {
    self.vocab = vocab
    self.ignoreMerges = ignoreMerges
    var m: [UInt64: (Int32, Int32)] = [:]
    m.reserveCapacity(merges.count)
    for (rank, (a, b)) in merges.enumerated() {
      guard let ia = vocab[a], let ib = vocab[b], let ic = vocab[a + b] else {
        throw TokenizerError("merge #\(rank) '\(a) \(b)' uses a token missing from the vocabulary")
      }
      let key = BPEModel.key(ia, ib)
      if m[key] == nil { m[key] = (Int32(rank), ic) }
    }
    self.merges = m
    byteIds = ByteLevel.chars.map { vocab[String($0)] ?? -1 }
  }

  @inline(__always) static func key(_ a: Int32, _ b: Int32) -> UInt64 {
    UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
  }

  /// The ids of one pre-token given as UTF-8 bytes.
  func encode(_ bytes: [UInt8], into out: inout [Int32]) throws(TokenizerError) {
    if ignoreMerges, let id = vocab[ByteLevel.encode(bytes)] {
      out.append(id)
      return
    }
    var syms: [Int32] = []
    syms.reserveCapacity(bytes.count)
    for b in bytes {
      let id = byteIds[Int(b)]
      guard id >= 0 else { throw TokenizerError("byte 0x\(String(b, radix: 16)) has no token in the vocabulary") }
      syms.append(id)
    }
    while syms.count > 1 {
      var best = Int32.max
      var at = -1
      var merged: Int32 = 0
      for i in 0..<(syms.count - 1) {
        if let m = merges[BPEModel.key(syms[i], syms[i + 1])], m.rank < best {
          best = m.rank
          at = i
          merged = m.id
        }
      }
      if at < 0 { break }
      syms[at] = merged
      syms.remove(at: at + 1)
    }
    out.append(contentsOf: syms)
  }
}
