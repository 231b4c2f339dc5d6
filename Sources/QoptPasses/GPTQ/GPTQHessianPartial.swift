import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// One data shard's contribution to one block input's GPTQ Hessian, as a file: what
/// `calibrate<data-shards=N;shard=K;partials=DIR>,gptq<float-inputs>` writes for every input a
/// selected linear reads, and what the merge run (`partials=DIR` without `shard`) reads back
/// and adds in shard order (`GPTQHessian.add`).
///
/// `DIR/gptq-shard-K-of-N/<input>.hessian` is one line of JSON (the header: the calibration
/// fingerprint, N, K, the block, the input's key, the options that change the sums, the counts)
/// followed by the unscaled upper triangle `Σ c_t·x_t x_tᵀ`, row by row, as raw little-endian
/// f32 (`columns·(columns+1)/2` values; 4096² inputs of an 8B model: 32 MiB).
package struct GPTQHessianPartial {
  /// What a partial was made from; a merge run refuses a file whose key differs from its own.
  package struct Key: Equatable, Sendable {
    /// `calibrate`'s fingerprint, `data hash/samples/seqlen/seed`.
    package var data: String
    package var shards: Int
    package var shard: Int
    package var block: Int
    /// The weight name the input is keyed by (the first selected linear reading it).
    package var input: String
    package var sinkWeight: Double
    /// `gptq`'s `batch-size`: the forward batches, and so the order of the f32 sums.
    package var batch: Int

    package init(
      data: String, shards: Int, shard: Int, block: Int, input: String, sinkWeight: Double,
      batch: Int
    ) {
      (self.data, self.shards, self.shard, self.block) = (data, shards, shard, block)
      (self.input, self.sinkWeight, self.batch) = (input, sinkWeight, batch)
    }
  }

  /// `DIR/gptq-shard-K-of-N`.
  package static func directory(_ dir: String, _ k: Int, of n: Int) -> String {
    dir + "/gptq-shard-\(k)-of-\(n)"
  }

  /// The file of `key`'s partial under `dir` (the input's name with anything but letters,
  /// digits, `.`, `-` and `_` as `_`; the header keeps the exact name).
  package static func path(_ dir: String, _ key: Key) -> String {
    let safe = String(
      key.input.unicodeScalars.map {
        ("0"..."9").contains($0) || ("a"..."z").contains($0) || ("A"..."Z").contains($0)
          || "._-".unicodeScalars.contains($0) ? Character($0) : "_"
      })
    return directory(dir, key.shard, of: key.shards) + "/\(safe).hessian"
  }

  /// Writes `h` for `key` under `dir` atomically (creating the directories).
  package static func save(_ h: GPTQHessian, _ key: Key, dir: String) throws {
    try makeDirectory(dir)
    try makeDirectory(directory(dir, key.shard, of: key.shards))
    let upper = h.upperTriangle
    let header = JSON.object([
      ("qopt_gptq_hessian", .int(1)), ("data", .string(key.data)), ("shards", .int(key.shards)),
      ("shard", .int(key.shard)), ("block", .int(key.block)), ("input", .string(key.input)),
      ("sink_weight", .int(Int(bitPattern: UInt(key.sinkWeight.bitPattern)))),
      ("batch_size", .int(key.batch)), ("columns", .int(h.columns)),
      ("tokens_per_window", .int(h.tokensPerWindow)), ("rows", .int(h.counts.rows)),
      ("weight", .int(Int(bitPattern: UInt(h.counts.weight.bitPattern)))),
      ("payload", .string("f32 little-endian, upper triangle row by row, unscaled")),
      ("payload_bytes", .int(upper.count * 4)),
    ])
    var bytes = Array((header.serialized + "\n").utf8)
    bytes.reserveCapacity(bytes.count + upper.count * 4)
    for v in upper {
      let b = v.bitPattern  // written low byte first
      bytes.append(contentsOf: [
        UInt8(b & 0xFF), UInt8(b >> 8 & 0xFF), UInt8(b >> 16 & 0xFF), UInt8(b >> 24),
      ])
    }
    let w = try AtomicFileWriter(path: path(dir, key))
    try w.write(bytes)
    try w.commit()
  }

  private static func makeDirectory(_ d: String) throws {
    guard mkdir(d, 0o755) == 0 || errno == EEXIST else {
      throw StorageError(
        file: d, offset: nil,
        message: "cannot create the directory: \(String(cString: strerror(errno)))")
    }
  }

  /// Reads `key`'s partial from `dir`: refuses a missing file (naming the shard run that
  /// makes it), a file that is not a partial or is cut short, and one made for another key.
  package static func load(
    _ key: Key, dir: String, tokensPerWindow: Int
  ) throws -> GPTQHessian {
    let p = path(dir, key)
    guard fileExists(p) else {
      throw PassError(
        "\(p) is missing: run calibrate<…;data-shards=\(key.shards);shard=\(key.shard);partials=\(dir)>,gptq<…;float-inputs> first"
      )
    }
    let f = try MappedFile(path: p)
    let all = f.all
    guard let nl = all.prefix(1 << 16).firstIndex(of: 0x0A),
      let j = try? JSON.parse(UnsafeRawBufferPointer(rebasing: all[..<nl])),
      j["qopt_gptq_hessian"]?.intValue == 1, let n = j["columns"]?.intValue, n > 0, n <= 1 << 20,
      let rows = j["rows"]?.intValue, rows >= 0, let wbits = j["weight"]?.intValue,
      let sbits = j["sink_weight"]?.intValue
    else { throw StorageError(file: p, offset: 0, message: "not a gptq Hessian partial") }
    let found = Key(
      data: j["data"]?.stringValue ?? "?", shards: j["shards"]?.intValue ?? -1,
      shard: j["shard"]?.intValue ?? -1, block: j["block"]?.intValue ?? -1,
      input: j["input"]?.stringValue ?? "?",
      sinkWeight: Double(bitPattern: UInt64(UInt(bitPattern: sbits))),
      batch: j["batch_size"]?.intValue ?? -1)
    guard found == key, j["tokens_per_window"]?.intValue == tokensPerWindow else {
      throw StorageError(
        file: p, offset: 0,
        message:
          "made for other calibration data, shards or gptq options (\(describe(found)); this run: \(describe(key))); run the shards again"
      )
    }
    let count = n * (n + 1) / 2
    guard all.count - (nl + 1) == count * 4 else {
      throw StorageError(
        file: p, offset: nl + 1,
        message:
          "holds \(all.count - nl - 1) bytes of Hessian, not the \(count * 4) of \(n) columns")
    }
    var upper = [Float](repeating: 0, count: count)
    upper.withUnsafeMutableBytes {
      $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: all[(nl + 1)...]))
    }
    for i in upper.indices {
      upper[i] = Float(bitPattern: UInt32(littleEndian: upper[i].bitPattern))
    }
    return GPTQHessian(
      columns: n, tokensPerWindow: tokensPerWindow, sinkWeight: key.sinkWeight,
      upperTriangle: upper, rows: rows, weight: Double(bitPattern: UInt64(UInt(bitPattern: wbits))))
  }

  private static func describe(_ k: Key) -> String {
    "\(k.data), shard \(k.shard) of \(k.shards), block \(k.block), \(k.input), sink-weight=\(k.sinkWeight), batch-size=\(k.batch)"
  }
}
