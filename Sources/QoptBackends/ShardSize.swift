/// Parses a shard size as transformers' `max_shard_size` does: an integer byte count or a
/// number with a unit, decimal (`KB`, `MB`, `GB`: powers of 1000) or binary (`KiB`, `MiB`,
/// `GiB`: powers of 1024). `"5GB"` (the default) is 5,000,000,000 bytes.
public func parseShardSize(_ text: String) -> Int? {
  let t = text.trimmingSpaces()
  if let n = Int(t), n > 0 { return n }
  let units: [(String, Double)] = [
    ("KIB", 1024), ("MIB", 1_048_576), ("GIB", 1_073_741_824), ("TIB", 1_099_511_627_776),
    ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("B", 1),
  ]
  let upper = t.uppercased()
  for (u, scale) in units where upper.hasSuffix(u) {
    guard let v = Double(upper.dropLast(u.count).trimmingSpaces()), v > 0 else { return nil }
    let bytes = (v * scale).rounded()
    return bytes >= 1 && bytes < 9e18 ? Int(bytes) : nil
  }
  return nil
}

extension StringProtocol {
  func trimmingSpaces() -> String {
    String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
  }
}
