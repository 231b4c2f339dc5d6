import QoptIR

/// An importance-matrix file as llama.cpp writes it (`tools/imatrix/imatrix.cpp`) and reads it
/// (`common/imatrix-loader.cpp`), in either of its two layouts:
///
/// - GGUF (`general.type = "imatrix"`): per weight `W` the tensors `W.in_sum2` (f32, ggml
///   `[columns, experts]`: raw sums of x²) and `W.counts` (f32 `[1, experts]`: tokens summed),
///   and the keys `imatrix.datasets` (string array), `imatrix.chunk_count` and
///   `imatrix.chunk_size` (u32).
/// - legacy `.dat`: `i32 n_entries`, then per entry `i32 len, name, i32 ncall, i32 nval,
///   nval × f32` holding `sum / count · ncall` (ncall = chunks, rounded up), then optionally
///   `i32 chunk_count, i32 len, dataset`.
///
/// Names are llama.cpp's (`blk.0.attn_q.weight`). A legacy entry becomes an `ImportanceStats`
/// with `tokens = [ncall]`, so `columnWeights()` gives llama-quantize's `sums / ncall` for it
/// too; the `.dat` layout cannot tell experts apart, so its entries have one matrix.
///
/// Every size and count is checked against the bytes present: a hostile file is a located
/// `FrontendError`, never a trap or an unbounded allocation.
public struct ImatrixFile: Sendable {
  /// Statistics keyed by llama.cpp tensor name.
  public var entries: [String: ImportanceStats]
  /// `imatrix.datasets` (GGUF) or the trailing dataset name (`.dat`).
  public var datasets: [String]
  /// Chunks the statistics were computed on (`imatrix.chunk_count`).
  public var chunkCount: Int
  /// Tokens per chunk (`imatrix.chunk_size`; 0 in a legacy file, which does not record it).
  public var chunkSize: Int
  /// Whether the file was the legacy `.dat` layout.
  public var isLegacy: Bool

  public init(
    entries: [String: ImportanceStats], datasets: [String], chunkCount: Int, chunkSize: Int,
    isLegacy: Bool = false
  ) {
    self.entries = entries
    self.datasets = datasets
    self.chunkCount = chunkCount
    self.chunkSize = chunkSize
    self.isLegacy = isLegacy
  }

  /// The `.in_sum2` / `.counts` suffixes of the GGUF layout.
  static let sumsSuffix = ".in_sum2"
  static let countsSuffix = ".counts"

  /// Reads either layout: GGUF when the file starts with the GGUF magic (as llama.cpp tries
  /// GGUF first), the legacy layout otherwise.
  public static func read(path: String) throws(FrontendError) -> ImatrixFile {
    let file: MappedFile
    do { file = try MappedFile(path: path) } catch { throw FrontendError(error) }
    let bytes = file.all
    if bytes.count >= 4, bytes.loadUnaligned(as: UInt32.self) == 0x4655_4747 {
      return try readGGUF(GGUFFile(file: file))
    }
    return try readLegacy(bytes, path: path)
  }

  // MARK: - GGUF layout

  static func readGGUF(_ g: GGUFFile) throws(FrontendError) -> ImatrixFile {
    let path = g.path
    var sums: [String: GGUFTensorInfo] = [:]
    var counts: [String: GGUFTensorInfo] = [:]
    for t in g.tensors {
      if t.name.hasSuffix(sumsSuffix) {
        sums[String(t.name.dropLast(sumsSuffix.count))] = t
      } else if t.name.hasSuffix(countsSuffix) {
        counts[String(t.name.dropLast(countsSuffix.count))] = t
      }
    }
    guard !g.tensors.isEmpty else {
      throw FrontendError(file: path, offset: 0, "no tensors: not an importance matrix")
    }
    var entries: [String: ImportanceStats] = [:]
    for name in Set(sums.keys).union(counts.keys).sorted() {
      guard let s = sums[name], let c = counts[name] else {
        let have = sums[name] ?? counts[name]
        throw FrontendError(
          file: path, offset: have?.infoOffset ?? 0,
          "'\(name)' has \(sums[name] == nil ? "counts but no '\(sumsSuffix)'" : "sums but no '\(countsSuffix)'") tensor"
        )
      }
      for t in [s, c] where t.type != .f32 {
        throw FrontendError(
          file: path, offset: t.infoOffset, "tensor '\(t.name)' must be F32, found \(t.type.name)")
      }
      let experts = c.elementCount
      guard experts > 0, s.elementCount > 0, s.elementCount % experts == 0 else {
        throw FrontendError(
          file: path, offset: s.infoOffset,
          "tensor '\(s.name)' has \(s.elementCount) values, not a positive multiple of the \(experts) counts of '\(c.name)'"
        )
      }
      let values = floats(g.bytes(of: s))
      var tokens: [Int] = []
      for (e, v) in floats(g.bytes(of: c)).enumerated() {
        guard v.isFinite, v >= 0, v < 0x1p62 else {
          throw FrontendError(
            file: path, offset: g.dataStart + c.offset + 4 * e,
            "tensor '\(c.name)': count \(v) is not a finite number ≥ 0")
        }
        tokens.append(Int(v.rounded(.toNearestOrAwayFromZero)))  // llama.cpp: lround
      }
      entries[name] = ImportanceStats(
        columns: s.elementCount / experts, sumSquares: values, tokens: tokens)
    }
    var datasets: [String] = []
    if case .array(_, let items)? = g["imatrix.datasets"] {
      for case .string(let d) in items { datasets.append(d) }
    }
    return ImatrixFile(
      entries: entries, datasets: datasets,
      chunkCount: Int(g["imatrix.chunk_count"]?.unsignedValue ?? 0),
      chunkSize: Int(g["imatrix.chunk_size"]?.unsignedValue ?? 0))
  }

  static func floats(_ b: UnsafeRawBufferPointer) -> [Float] {
    (0..<(b.count / 4)).map { b.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
  }

  // MARK: - Legacy layout

  static func readLegacy(
    _ b: UnsafeRawBufferPointer, path: String
  ) throws(FrontendError) -> ImatrixFile {
    var pos = 0
    func i32(_ what: String) throws(FrontendError) -> Int {
      guard b.count - pos >= 4 else {
        throw FrontendError(
          file: path, offset: pos, "truncated: \(what) needs 4 bytes, \(b.count - pos) left")
      }
      defer { pos += 4 }
      return Int(Int32(littleEndian: b.loadUnaligned(fromByteOffset: pos, as: Int32.self)))
    }
    let n = try i32("the entry count")
    // Each entry takes at least 16 bytes (three i32 and one value).
    guard n >= 1, n <= (b.count - pos) / 16 else {
      throw FrontendError(
        file: path, offset: 0,
        "entry count \(n) does not fit the file (\(b.count) bytes): not an importance matrix")
    }
    var entries: [String: ImportanceStats] = [:]
    for i in 0..<n {
      let at = pos
      let len = try i32("the name length of entry \(i)")
      guard len >= 0, len <= b.count - pos else {
        throw FrontendError(
          file: path, offset: at, "entry \(i): name length \(len) runs past the end of the file")
      }
      let nameBytes = b[pos..<(pos + len)].prefix { $0 != 0 }
      guard let name = String(validating: nameBytes, as: UTF8.self) else {
        throw FrontendError(file: path, offset: pos, "entry \(i): name is not valid UTF-8")
      }
      pos += len
      let ncall = try i32("ncall of '\(name)'")
      let nvalAt = pos
      let nval = try i32("the value count of '\(name)'")
      guard nval >= 1, nval <= (b.count - pos) / 4 else {
        throw FrontendError(
          file: path, offset: nvalAt,
          "'\(name)': \(nval) values do not fit the \(b.count - pos) bytes left")
      }
      guard entries[name] == nil else {
        throw FrontendError(file: path, offset: at, "entry '\(name)' appears twice")
      }
      let values = floats(UnsafeRawBufferPointer(rebasing: b[pos..<(pos + 4 * nval)]))
      pos += 4 * nval
      // llama-quantize divides by ncall only when it is positive, else uses the values as
      // they are: a count of 1 gives the same weights.
      entries[name] = ImportanceStats(
        columns: nval, sumSquares: values, tokens: [max(ncall, 0) == 0 ? 1 : ncall])
    }
    var chunks = 0
    var datasets: [String] = []
    if b.count - pos >= 4 {
      chunks = max(0, try i32("the chunk count"))
      if b.count - pos >= 4 {
        let len = try i32("the dataset name length")
        if len > 0, len <= b.count - pos,
          let d = String(validating: b[pos..<(pos + len)].prefix { $0 != 0 }, as: UTF8.self)
        {
          datasets.append(d)
        }
      }
    }
    return ImatrixFile(
      entries: entries, datasets: datasets, chunkCount: chunks, chunkSize: 0, isLegacy: true)
  }
}
