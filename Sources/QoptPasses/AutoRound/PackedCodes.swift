/// The integer codes of one tuned weight, two to a byte when they fit in 4 bits: what autoround
/// keeps of its best iteration instead of that iteration's f32 rounding offsets V.
///
/// Why: the codes (with the per-group α, β the scales come from) are all `finalize` and the
/// quantized forward need of the best iteration, and they take 1/8 of V's memory at ≤ 4 bits
/// (109 MB instead of 872 MB for a Llama-3-8B block), 1/4 above. Codes are stored as their low
/// 4 bits (nibbles) or whole bytes and read back sign-extended, so an `Int8` in −8...7 (or any
/// `Int8` for bytes) comes back unchanged; a 4-bit unsigned code (E2M1) comes back as the
/// `Int8` with the same low 4 bits.
package struct PackedCodes {
  package let count: Int
  /// Two codes per byte (low nibble first) rather than one.
  package let nibbles: Bool
  private var bytes: [UInt8]

  package init(count: Int, nibbles: Bool) {
    self.count = count
    self.nibbles = nibbles
    bytes = [UInt8](repeating: 0, count: nibbles ? (count + 1) / 2 : count)
  }

  /// Bytes held.
  package var byteCount: Int { bytes.count }

  /// Stores `n` codes from `src` at `start` (an even `start` when packing nibbles).
  package mutating func store(_ src: UnsafePointer<Int8>, count n: Int, at start: Int) {
    precondition(start >= 0 && start + n <= count && (!nibbles || start % 2 == 0), "codes inside")
    let nib = nibbles
    bytes.withUnsafeMutableBufferPointer { b in
      guard let p = b.baseAddress else { return }
      if !nib {
        for i in 0..<n { p[start + i] = UInt8(bitPattern: src[i]) }
        return
      }
      let d = p + start / 2
      for j in 0..<(n / 2) {
        let lo = UInt8(bitPattern: src[2 * j]) & 0xF, hi = UInt8(bitPattern: src[2 * j + 1]) & 0xF
        d[j] = lo | hi << 4
      }
      if n % 2 == 1 { d[n / 2] = UInt8(bitPattern: src[n - 1]) & 0xF }
    }
  }

  /// Reads `n` codes starting at `start` (even when packing nibbles) into `dst`, sign-extended.
  package func load(into dst: UnsafeMutablePointer<Int8>, count n: Int, at start: Int) {
    precondition(start >= 0 && start + n <= count && (!nibbles || start % 2 == 0), "codes inside")
    let nib = nibbles
    bytes.withUnsafeBufferPointer { b in
      guard let p = b.baseAddress else { return }
      if !nib {
        for i in 0..<n { dst[i] = Int8(bitPattern: p[start + i]) }
        return
      }
      let s = p + start / 2
      for i in 0..<n {
        let byte = s[i / 2]
        let nibble = i % 2 == 0 ? byte << 4 : byte & 0xF0
        dst[i] = Int8(bitPattern: nibble) >> 4
      }
    }
  }
}
