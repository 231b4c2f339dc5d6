/// GPT-2's reversible byte ↔ unicode map: printable bytes map to themselves, the other 68
/// bytes to U+0100 and up in byte order (so a space reads as `Ġ`, U+0120).
enum ByteLevel {
  /// `chars[b]` is the character byte `b` maps to.
  static let chars: [Unicode.Scalar] = {
    var printable = [Bool](repeating: false, count: 256)
    for b in 0x21...0x7E { printable[b] = true }
    for b in 0xA1...0xAC { printable[b] = true }
    for b in 0xAE...0xFF { printable[b] = true }
    var out = [Unicode.Scalar](repeating: " ", count: 256)
    var n: UInt32 = 0
    for b in 0..<256 {
      if printable[b] {
        out[b] = Unicode.Scalar(UInt8(b))
      } else {
        out[b] = Unicode.Scalar(256 + n)!  // safe: 256…323 are valid scalars
        n += 1
      }
    }
    return out
  }()

  /// The byte-level string of some UTF-8 bytes.
  static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    var s = String.UnicodeScalarView()
    for b in bytes { s.append(chars[Int(b)]) }
    return String(s)
  }
}
