import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// Per-block checkpoints of `autoround<checkpoint-dir=DIR>`:
///
/// - `DIR/block.N.bin`: the finished block N's quantized weights (codes, scales, zero points);
/// - `DIR/inputs.N.bin`: block N's float and quantized inputs (N the next block);
/// - `DIR/state.txt`: fingerprints (model, data, options and threads), the next block index,
///   the inputs file, the per-block report lines and the static input scales set so far.
///
/// Every file is written under a temporary name and renamed into place, and `state.txt` is
/// renamed last: a kill at any point leaves either the previous consistent state or the new
/// one. The inputs file is named after its block so that the new inputs never replace the
/// ones the previous state names; the old file is deleted once the new state is in place
/// (while a block is saved the disk holds both sets).
///
/// Nothing random carries over between blocks (each block's sampler is seeded from the seed
/// and the block index), so these files are the whole state.
package struct AutoRoundCheckpoint {
  let directory: String
  let model: String
  let data: String
  let options: String
  /// What the refusal of a checkpoint made differently tells the user to do.
  let wayOut: String

  struct Resumed {
    var next: Int
    var xFp: ActivationStore
    var xQ: ActivationStore?
    var reports: [BlockReport]
    var inputScales: [(String, Float)]
  }

  package init(
    directory: String, model: String, data: String, options: String,
    wayOut: String = "remove the directory or use another checkpoint-dir"
  ) throws {
    self.directory = directory
    self.model = model
    self.data = data
    self.options = options
    self.wayOut = wayOut
    // An unwritable place fails here, before the work: the directory (and any missing
    // parent, `OUT.qopt-resume/autoround`) is made and, until the first block is saved,
    // removed again, so a run stopped before then leaves nothing behind.
    for d in try makeDirectories().reversed() { rmdir(d) }
  }

  /// Makes the directory and its missing parents; returns the ones it made, outermost first.
  @discardableResult
  private func makeDirectories() throws -> [String] {
    var missing: [String] = []
    var p = directory
    while !p.isEmpty && p != "/" && !fileExists(p) {
      missing.insert(p, at: 0)
      p = parentDirectory(of: p)
    }
    for d in missing where mkdir(d, 0o755) != 0 {
      let why = String(cString: strerror(errno))
      throw PassError("cannot create checkpoint directory \(d): \(why)")
    }
    return missing
  }

  /// Whether a file named `name` is one a checkpoint writes (what `BlockCheckpoints.remove`
  /// may delete): `state.txt`, `inputs.bin` (older checkpoints), `inputs.N.bin`,
  /// `block.N.bin`, and the temporaries `.NAME.qopt-tmp-PID` of those.
  static func isOwnFile(_ name: String) -> Bool {
    if name == "state.txt" || name == "inputs.bin" { return true }
    if name.hasPrefix("."), let r = name.firstRange(of: ".qopt-tmp-") {
      return isOwnFile(String(name[name.index(after: name.startIndex)..<r.lowerBound]))
    }
    for prefix in ["inputs.", "block."] where name.hasPrefix(prefix) && name.hasSuffix(".bin") {
      let middle = name.dropFirst(prefix.count).dropLast(4)
      return !middle.isEmpty && middle.allSatisfy(\.isNumber)
    }
    return false
  }

  private var statePath: String { directory + "/state.txt" }

  /// The saved state, or nil when the directory holds none. Refuses one made differently. The
  /// saved activations (`samples` per set) are read a sample at a time into `newStore()`s.
  func resume(samples: Int, newStore: () -> ActivationStore) throws -> Resumed? {
    guard fileExists(statePath) else { return nil }
    let text = String(decoding: try readFile(statePath), as: UTF8.self)
    var fields: [String: String] = [:]
    var reports: [BlockReport] = []
    var inputScales: [(String, Float)] = []
    for line in text.split(separator: "\n") {
      if line.hasPrefix("input-scale ") {
        // "input-scale NAME VALUE"; the name may hold spaces, the value does not.
        let rest = line.dropFirst("input-scale ".count)
        guard let sp = rest.lastIndex(of: " "), let v = Float(rest[rest.index(after: sp)...]), v.isFinite, v > 0 else {
          throw StorageError(file: statePath, offset: nil, message: "malformed line '\(line)'")
        }
        inputScales.append((String(rest[..<sp]), v))
      } else if line.hasPrefix("block ") {
        let p = line.split(separator: " ")
        guard p.count == 6, let i = Int(p[1]), let a = Double(p[2]), let b = Double(p[3]), let it = Int(p[4]), let s = Double(p[5]) else {
          throw StorageError(file: statePath, offset: nil, message: "malformed line '\(line)'")
        }
        reports.append(BlockReport(index: i, firstLoss: a, bestLoss: b, bestIteration: it, seconds: s))
      } else if let eq = line.firstIndex(of: "=") {
        fields[String(line[..<eq])] = String(line[line.index(after: eq)...])
      }
    }
    for (key, mine) in [("model", model), ("data", data), ("options", options)] {
      guard let theirs = fields[key] else { throw StorageError(file: statePath, offset: nil, message: "missing '\(key)='") }
      if theirs != mine {
        var what = key == "data" ? "calibration data (hash/samples/seqlen/seed \(theirs), now \(mine))" : "model"
        if key == "options" {
          let a = Dictionary(theirs.split(separator: ";").map { kv in (kv.split(separator: "=", maxSplits: 1).first.map(String.init) ?? "", String(kv)) }, uniquingKeysWith: { x, _ in x })
          let b = Dictionary(mine.split(separator: ";").map { kv in (kv.split(separator: "=", maxSplits: 1).first.map(String.init) ?? "", String(kv)) }, uniquingKeysWith: { x, _ in x })
          let diff = Set(a.keys).union(b.keys).sorted().filter { a[$0] != b[$0] }.map { "\(a[$0] ?? $0 + " unset") → \(b[$0] ?? $0 + " unset")" }
          what = "options (\(diff.joined(separator: ", ")))"
        }
        throw PassError("checkpoint in \(directory) was made with a different \(what); \(wayOut)")
      }
    }
    guard let nextText = fields["next"], let next = Int(nextText) else { throw StorageError(file: statePath, offset: nil, message: "missing 'next='") }
    let path = directory + "/" + (fields["inputs"] ?? "inputs.bin")
    let hasQ = fields["quantized-inputs"] == "true"
    let xFp = newStore(), xQ = hasQ ? newStore() : nil
    let per = xFp.sampleFloats
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw StorageError(file: path, offset: nil, message: "cannot open: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var st = stat()
    let need = samples * per * 4 * (hasQ ? 2 : 1)
    guard fstat(fd, &st) == 0, Int(st.st_size) == need else {
      throw StorageError(file: path, offset: Int(st.st_size), message: "expected \(need) bytes of activations, found \(st.st_size)")
    }
    var sample = [Float](repeating: 0, count: per)
    for (k, store) in [xFp, xQ].compactMap({ $0 }).enumerated() {
      for i in 0..<samples {
        let offset = (k * samples + i) * per * 4
        try sample.withUnsafeMutableBytes { raw in
          var done = 0
          while done < raw.count {
            let got = pread(fd, raw.baseAddress! + done, raw.count - done, off_t(offset + done))  // safe: per > 0
            guard got > 0 else { throw StorageError(file: path, offset: offset + done, message: "read failed") }
            done += got
          }
        }
        try sample.withUnsafeBufferPointer { try store.append($0.baseAddress!) }  // safe: as above
      }
    }
    return Resumed(next: next, xFp: xFp, xQ: xQ, reports: reports, inputScales: inputScales)
  }

  /// Writes block `block`'s weights, the next inputs, then the state naming block + 1.
  func save(
    block: Int, weights: [(String, QuantizedTensor)], xFp: ActivationStore, xQ: ActivationStore?,
    inputScales: [(String, Float)], reports: [BlockReport]
  ) throws {
    try makeDirectories()
    var out: [UInt8] = Array("QOPTAR1\n".utf8)
    func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { out += $0 } }
    u32(weights.count)
    for (name, q) in weights {
      let n = Array(name.utf8)
      u32(n.count)
      out += n
      u32(q.shape[0])
      u32(q.shape[1])
      u32(q.scale.count)
      // 0: symmetric int, 1: int with zero points, 2: NVFP4 with its global scale.
      let nvfp4: Bool = if case .nvfp4 = q.scheme { true } else { false }
      out.append(nvfp4 ? 2 : q.zeroPoint == nil ? 0 : 1)
      out += q.codes.bytes
      for s in q.scale.floats() { withUnsafeBytes(of: s.bitPattern.littleEndian) { out += $0 } }
      if let z = q.zeroPoint { out += z.bytes }
      if nvfp4 { withUnsafeBytes(of: (q.globalScale?.floats().first ?? 1).bitPattern.littleEndian) { out += $0 } }
    }
    try write(directory + "/block.\(block).bin", out)
    // The activations a sample at a time, never all in memory at once.
    let inputsName = "inputs.\(block + 1).bin"
    let inputs = try AtomicFileWriter(path: directory + "/" + inputsName)
    var sample = [Float](repeating: 0, count: xFp.sampleFloats)
    for store in [xFp, xQ].compactMap({ $0 }) {
      for i in 0..<store.samples {
        try sample.withUnsafeMutableBufferPointer { try store.read(i, into: $0.baseAddress!) }  // safe: non-empty
        try sample.withUnsafeBytes { try inputs.write($0) }
      }
    }
    try inputs.commit()
    var state = "model=\(model)\ndata=\(data)\noptions=\(options)\nnext=\(block + 1)\n"
    state += "inputs=\(inputsName)\nquantized-inputs=\(xQ != nil)\n"
    for (name, value) in inputScales { state += "input-scale \(name) \(value)\n" }
    for r in reports { state += "block \(r.index) \(r.firstLoss) \(r.bestLoss) \(r.bestIteration) \(r.seconds)\n" }
    try write(statePath, Array(state.utf8))
    // The inputs no state names any more.
    for name in directoryEntries(directory)
    where name != inputsName && name.hasPrefix("inputs.") && Self.isOwnFile(name) {
      unlink(directory + "/" + name)
    }
  }

  /// Block `block`'s weights as written by `save`.
  package func loadBlock(_ block: Int, scheme schemeFor: (_ name: String, _ columns: Int) -> IntScheme) throws -> [(String, QuantizedTensor)] {
    let path = directory + "/block.\(block).bin"
    let b = try readFile(path)
    var pos = 8
    func fail(_ m: String) -> StorageError { StorageError(file: path, offset: pos, message: m) }
    guard b.count >= 8, Array(b[0..<8]) == Array("QOPTAR1\n".utf8) else { throw fail("not an autoround checkpoint block") }
    func take(_ n: Int) throws -> ArraySlice<UInt8> {
      guard n >= 0, pos + n <= b.count else { throw fail("truncated") }
      defer { pos += n }
      return b[pos..<(pos + n)]
    }
    func u32() throws -> Int {
      let s = try take(4)
      return s.reversed().reduce(0) { $0 << 8 | Int($1) }
    }
    var out: [(String, QuantizedTensor)] = []
    for _ in 0..<(try u32()) {
      let name = String(decoding: try take(try u32()), as: UTF8.self)
      let rows = try u32(), cols = try u32(), scales = try u32()
      let kind = try take(1).first ?? 0
      let hasZ = kind == 1
      guard rows > 0, cols > 0, scales > 0, scales % rows == 0 else { throw fail("bad shape for \(name)") }
      let codes = Array(try take(rows * cols)).map { Int8(bitPattern: $0) }
      let sb = Array(try take(scales * 4))
      let sf = (0..<scales).map { i in Float(bitPattern: sb[(i * 4)..<(i * 4 + 4)].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }) }
      let z = hasZ ? Array(try take(scales)).map { Int8(bitPattern: $0) } : nil
      let shape = [rows, scales / rows]
      if kind == 2 {
        let g = Float(bitPattern: Array(try take(4)).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        out.append((name, QuantizedTensor(
          scheme: .nvfp4(group: cols / (scales / rows)), codes: TensorData(int8: codes, shape: [rows, cols]),
          scale: TensorData(dtype: .f8e4m3, shape: shape, bytes: sf.map(floatToE4M3)), globalScale: TensorData(floats: [g], shape: [1]))))
        continue
      }
      let scheme = schemeFor(name, cols)
      guard (z == nil) == scheme.symmetric else { throw fail("zero points of \(name) do not match the scheme") }
      out.append((name, QuantizedTensor(scheme: .int(scheme),
        codes: TensorData(int8: codes, shape: [rows, cols]), scale: TensorData(floats: sf, shape: shape, as: scheme.scaleType),
        zeroPoint: z.map { TensorData(int8: $0, shape: shape) })))
    }
    return out
  }

  private func write(_ path: String, _ bytes: [UInt8]) throws {
    let w = try AtomicFileWriter(path: path)
    try w.write(bytes)
    try w.commit()
  }
}
