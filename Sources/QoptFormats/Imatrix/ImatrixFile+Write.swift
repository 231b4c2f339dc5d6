import QoptIR

/// Writing importance-matrix files laid out as llama-imatrix writes them (`save_imatrix` and
/// `save_imatrix_legacy` in `tools/imatrix/imatrix.cpp`), so llama-quantize reads them.
extension ImatrixFile {
  /// Writes the legacy layout when `path` ends in `.dat`, GGUF otherwise (llama-imatrix's
  /// `--output-format` default follows the same split in practice), atomically.
  public func write(to path: String) throws {
    let bytes = path.hasSuffix(".dat") ? legacyBytes() : ggufBytes()
    let out = try AtomicFileWriter(path: path)
    do {
      try out.write(bytes)
      try out.commit()
    } catch {
      out.abandon()
      throw error
    }
  }

  /// The GGUF layout: `general.type`, the three `imatrix.*` keys, then per name (sorted)
  /// `name.in_sum2` (ggml `[columns, experts]`) and `name.counts` (`[1, experts]`), f32, data
  /// aligned to 32 bytes.
  public func ggufBytes() -> [UInt8] {
    var head: [UInt8] = []
    func le<T: FixedWidthInteger>(_ v: T) {
      withUnsafeBytes(of: v.littleEndian) { head.append(contentsOf: $0) }
    }
    let names = entries.keys.sorted()
    let metadata: [(String, GGUFValue)] = [
      ("general.type", .string("imatrix")),
      ("imatrix.datasets", .strings(datasets)),
      ("imatrix.chunk_count", .u32(UInt32(clamping: chunkCount))),
      ("imatrix.chunk_size", .u32(UInt32(clamping: chunkSize))),
    ]
    head += Array("GGUF".utf8)
    le(UInt32(3))
    le(UInt64(names.count * 2))
    le(UInt64(metadata.count))
    for (k, v) in metadata {
      GGUFValue.string(k).encode(into: &head)
      le(v.typeID)
      v.encode(into: &head)
    }
    var data: [UInt8] = []
    func tensor(_ name: String, ne full: [Int], _ values: [Float]) {
      // ggml writes ggml_n_dims dimensions: trailing 1s dropped, at least one.
      var ne = full
      while ne.count > 1 && ne.last == 1 { ne.removeLast() }
      GGUFValue.string(name).encode(into: &head)
      le(UInt32(ne.count))
      for d in ne { le(UInt64(d)) }
      le(GGMLType.f32.rawValue)
      le(UInt64(data.count))
      for v in values {
        withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) }
      }
      data += [UInt8](repeating: 0, count: (32 - data.count % 32) % 32)
    }
    for name in names {
      // safe: iterating its keys
      let s = entries[name]!
      tensor(name + Self.sumsSuffix, ne: [s.columns, s.experts], s.sumSquares)
      tensor(name + Self.countsSuffix, ne: [1, s.experts], s.tokens.map { Float($0) })
    }
    head += [UInt8](repeating: 0, count: (32 - head.count % 32) % 32)
    return head + data
  }

  /// The legacy layout: entries whose every count is zero are skipped; values are
  /// `sum / count · ncall` in float with `ncall = ⌈max count / chunk size⌉` (a zero count
  /// stores 1), then the chunk count and the last dataset name.
  public func legacyBytes() -> [UInt8] {
    var out: [UInt8] = []
    func le<T: FixedWidthInteger>(_ v: T) {
      withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }
    let chunk = max(chunkSize, 1)
    // safe: filtering its own keys
    let stored = entries.keys.sorted().filter { entries[$0]!.tokens.contains { $0 != 0 } }
    le(Int32(clamping: stored.count))
    for name in stored {
      let s = entries[name]!  // safe: as above
      let bytes = Array(name.utf8)
      le(Int32(clamping: bytes.count))
      out += bytes
      let ncall = ((s.tokens.max() ?? 0) + chunk - 1) / chunk
      le(Int32(clamping: ncall))
      le(Int32(clamping: s.sumSquares.count))
      for e in 0..<s.experts {
        for j in 0..<s.columns {
          var value = s.sumSquares[e * s.columns + j]
          var count = Float(s.tokens[e])
          if count == 0 { (value, count) = (1, 1) }
          le(((value / count) * Float(ncall)).bitPattern)
        }
      }
    }
    le(Int32(clamping: chunkCount))
    let dataset = Array((datasets.last ?? "").utf8)
    le(Int32(clamping: dataset.count))
    out += dataset
    return out
  }
}
