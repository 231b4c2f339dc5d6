import QoptFormats
import QoptIR

/// GGUF metadata records kept as the bytes they were read as (key, type id, value), to be
/// written again unchanged. The records are walked once here, every length checked against the
/// bytes left, so a damaged blob (a sidecar is a file like any other) is an error and never
/// becomes a damaged output.
package struct RawMetadata {
  var keys: [String] = []
  var bytes: ArraySlice<UInt8>

  /// Parses the records of `blob`, a GGUF v2/v3 file with no tensors.
  init(ggufWithoutTensors blob: [UInt8], file: String, blob name: String) throws(BackendError) {
    func fail(_ at: Int, _ m: String) -> BackendError { BackendError(output: file, tensor: name, "byte \(at): \(m)") }
    var pos = 0
    func u32() throws(BackendError) -> UInt32 { UInt32(truncatingIfNeeded: try fixed(4)) }
    func u64() throws(BackendError) -> UInt64 { try fixed(8) }
    func fixed(_ n: Int) throws(BackendError) -> UInt64 {
      guard blob.count - pos >= n else { throw fail(pos, "truncated (\(n) bytes needed, \(blob.count - pos) left)") }
      var v: UInt64 = 0
      for i in 0..<n { v |= UInt64(blob[pos + i]) << (8 * i) }
      pos += n
      return v
    }
    func skip(_ n: UInt64) throws(BackendError) {
      guard n <= UInt64(blob.count - pos) else { throw fail(pos, "length \(n) runs past the end (\(blob.count - pos) bytes left)") }
      pos += Int(n)
    }
    func string() throws(BackendError) -> String {
      let n = try u64()
      let start = pos
      try skip(n)
      return String(decoding: blob[start..<pos], as: UTF8.self)
    }
    func value(_ type: UInt32, depth: Int) throws(BackendError) {
      switch type {
      case 0, 1, 7: try skip(1)
      case 2, 3: try skip(2)
      case 4, 5, 6: try skip(4)
      case 10, 11, 12: try skip(8)
      case 8: try skip(try u64())
      case 9:
        guard depth == 0 else { throw fail(pos, "nested arrays are not GGUF metadata") }
        let t = try u32()
        let n = try u64()
        guard n <= UInt64(blob.count - pos) else { throw fail(pos, "array of \(n) elements runs past the end") }
        for _ in 0..<n { try value(t, depth: depth + 1) }
      default: throw fail(pos - 4, "unknown metadata type \(type)")
      }
    }
    guard try u32() == 0x4655_4747 else { throw fail(0, "not a GGUF blob (bad magic)") }
    let version = try u32()
    guard version == 2 || version == 3 else { throw fail(4, "GGUF version \(version) (supported: 2, 3)") }
    guard try u64() == 0 else { throw fail(8, "a metadata blob holds no tensors") }
    let count = try u64()
    guard count <= UInt64(blob.count) else { throw fail(16, "\(count) records cannot fit in \(blob.count) bytes") }
    let start = pos
    var seen = Set<String>()
    for _ in 0..<count {
      let at = pos
      let key = try string()
      guard seen.insert(key).inserted else { throw fail(at, "duplicate key '\(key)'") }
      keys.append(key)
      try value(try u32(), depth: 0)
    }
    guard pos == blob.count else { throw fail(pos, "\(blob.count - pos) bytes after the last record") }
    bytes = blob[start...]
  }
}
