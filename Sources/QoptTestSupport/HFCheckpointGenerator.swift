import QoptIR

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Writes a bf16 Hugging Face checkpoint of a `CheckpointShape` with random weights, sharded
/// like the Hub (`model-0000K-of-0000N.safetensors` + `model.safetensors.index.json`) or as one
/// `model.safetensors`.
///
/// Why this way: an 8B checkpoint is 16 GB, so generation must run at disk speed. Each tensor
/// draws from its own SplitMix64 stream (seeded by the run seed and the tensor name, so the
/// values do not depend on the shard layout: a sharded and a single-file checkpoint of one seed
/// hold the same tensors) and maps 12 random bits at a time through a 4096-entry table of bf16
/// values, five values per 64-bit draw; the bytes go out in 8 MiB `write(2)` calls.
public enum HFCheckpointGenerator {
  public struct Summary: Sendable {
    public var files: [String]
    public var tensorBytes: Int
  }

  /// Writes the checkpoint into `dir` (created if missing): config.json, the shards (or one
  /// `model.safetensors` when `singleFile`), and `extraFiles` (tokenizer.json, …) verbatim.
  @discardableResult
  public static func write(
    _ shape: CheckpointShape, to dir: String, seed: UInt64 = 1, singleFile: Bool = false,
    extraFiles: [(String, [UInt8])] = []
  ) throws(StorageError) -> Summary {
    mkdir(dir, 0o755)
    let tensors = shape.tensors
    let limit = singleFile ? Int.max : shape.maxShardBytes
    var shards: [[Int]] = [[]]
    var size = 0
    for (i, t) in tensors.enumerated() {
      let bytes = t.shape.reduce(2, *)
      if size + bytes > limit && !shards[shards.count - 1].isEmpty {
        shards.append([])
        size = 0
      }
      shards[shards.count - 1].append(i)
      size += bytes
    }
    func fileName(_ k: Int) -> String {
      if singleFile { return "model.safetensors" }
      return "model-\(pad5(k + 1))-of-\(pad5(shards.count)).safetensors"
    }
    var files: [String] = []
    var weightMap: [(String, String)] = []
    var total = 0
    for (k, members) in shards.enumerated() {
      let name = fileName(k)
      try writeShard(
        dir + "/" + name, members.map { tensors[$0] }, seed: seed)
      files.append(name)
      for i in members { weightMap.append((tensors[i].name, name)) }
      total += members.reduce(0) { $0 + tensors[$1].shape.reduce(2, *) }
    }
    try writeText(dir + "/config.json", shape.configJSON)
    if !singleFile {
      let map = weightMap.sorted { $0.0 < $1.0 }.map { "    \"\($0.0)\": \"\($0.1)\"" }
      let index =
        "{\n  \"metadata\": {\n    \"total_size\": \(total)\n  },\n  \"weight_map\": {\n"
        + map.joined(separator: ",\n") + "\n  }\n}\n"
      try writeText(dir + "/model.safetensors.index.json", index)
      files.append("model.safetensors.index.json")
    }
    for (name, bytes) in extraFiles {
      try writeBytes(dir + "/" + name, bytes)
      files.append(name)
    }
    return Summary(files: ["config.json"] + files, tensorBytes: total)
  }

  /// The values `write` gives tensor `name` of `count` elements (for tests that compare a
  /// reader's output with the generator's intent).
  public static func values(
    _ name: String, kind: CheckpointShape.TensorKind, count: Int, cols: Int, seed: UInt64
  ) -> [UInt16] {
    var out = [UInt16](repeating: 0, count: count)
    var stream = ValueStream(name: name, kind: kind, cols: cols, seed: seed)
    out.withUnsafeMutableBufferPointer { stream.fill($0) }
    return out
  }

  static func writeShard(
    _ path: String, _ members: [(name: String, shape: [Int], kind: CheckpointShape.TensorKind)],
    seed: UInt64
  ) throws(StorageError) {
    var entries: [String] = []
    var offset = 0
    for t in members {
      let n = t.shape.reduce(2, *)
      let shape = t.shape.map(String.init).joined(separator: ",")
      entries.append(
        "\"\(t.name)\":{\"dtype\":\"BF16\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + n)]}"
      )
      offset += n
    }
    var header = Array(
      ("{\"__metadata__\":{\"format\":\"pt\"}," + entries.joined(separator: ",") + "}").utf8)
    while header.count % 8 != 0 { header.append(0x20) }
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else {
      throw StorageError(file: path, offset: nil, message: "cannot create: \(errnoText())")
    }
    defer { close(fd) }
    var prefix = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) }
    prefix += header
    if let e = prefix.withUnsafeBytes({ raw in
      attempt { () throws(StorageError) in try writeAll(fd, raw, path) }
    }) {
      throw e
    }
    let chunk = 4 << 20
    var buffer = [UInt16](repeating: 0, count: chunk)
    for t in members {
      var stream = ValueStream(
        name: t.name, kind: t.kind, cols: t.shape.last ?? 1, seed: seed)
      var left = t.shape.reduce(1, *)
      while left > 0 {
        let n = min(left, chunk)
        let failure = buffer.withUnsafeMutableBufferPointer { b in
          let part = UnsafeMutableBufferPointer(rebasing: b[0..<n])
          stream.fill(part)
          return attempt { () throws(StorageError) in
            try writeAll(fd, UnsafeRawBufferPointer(part), path)
          }
        }
        if let failure { throw failure }
        left -= n
      }
    }
  }

  static func writeAll(
    _ fd: Int32, _ raw: UnsafeRawBufferPointer, _ path: String
  )
    throws(StorageError)
  {
    var done = 0
    while done < raw.count {
      let r = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)  // safe: count > 0
      guard r > 0 else {
        throw StorageError(file: path, offset: done, message: "write failed: \(errnoText())")
      }
      done += r
    }
  }

  static func writeBytes(_ path: String, _ bytes: [UInt8]) throws(StorageError) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else {
      throw StorageError(file: path, offset: nil, message: "cannot create: \(errnoText())")
    }
    defer { close(fd) }
    let failure = bytes.withUnsafeBytes { raw in
      attempt { () throws(StorageError) in if raw.count > 0 { try writeAll(fd, raw, path) } }
    }
    if let failure { throw failure }
  }

  static func writeText(_ path: String, _ text: String) throws(StorageError) {
    try writeBytes(path, Array(text.utf8))
  }

  /// The error `body` threw, if any (for closures given to rethrowing buffer accessors).
  static func attempt(_ body: () throws(StorageError) -> Void) -> StorageError? {
    do { try body() } catch { return error }
    return nil
  }

  static func errnoText() -> String { String(cString: strerror(errno)) }

  static func pad5(_ k: Int) -> String {
    let s = String(k)
    return String(repeating: "0", count: max(0, 5 - s.count)) + s
  }
}

/// One tensor's random bf16 values: 12 bits of SplitMix64 per value through a 4096-entry table
/// of evenly spaced values (uniform, with the tensor kind's spread).
struct ValueStream {
  var rng: SplitMix64
  var table: [UInt16]
  var pending: UInt64 = 0
  var pendingCount = 0

  init(name: String, kind: CheckpointShape.TensorKind, cols: Int, seed: UInt64) {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    rng = SplitMix64(seed: seed ^ h)
    let (center, halfWidth): (Float, Float)
    switch kind {
    case .linear:
      (center, halfWidth) = (0, Float(3.0.squareRoot() / Double(max(cols, 1)).squareRoot()))
    case .embedding: (center, halfWidth) = (0, Float(0.02 * 3.0.squareRoot()))
    case .norm: (center, halfWidth) = (1, 0.05)
    }
    table = (0..<4096).map { i in
      floatToBF16(center + halfWidth * ((Float(i) + 0.5) / 2048 - 1))
    }
  }

  mutating func fill(_ out: UnsafeMutableBufferPointer<UInt16>) {
    table.withUnsafeBufferPointer { t in
      var i = 0
      while i < out.count && pendingCount > 0 {
        out[i] = t[Int(pending & 0xFFF)]
        pending >>= 12
        pendingCount -= 1
        i += 1
      }
      while i + 5 <= out.count {
        var r = rng.next()
        for k in 0..<5 {
          out[i + k] = t[Int(r & 0xFFF)]
          r >>= 12
        }
        i += 5
      }
      if i < out.count {
        pending = rng.next()
        pendingCount = 5
        while i < out.count {
          out[i] = t[Int(pending & 0xFFF)]
          pending >>= 12
          pendingCount -= 1
          i += 1
        }
      }
    }
  }
}
