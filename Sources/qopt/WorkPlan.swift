import QoptIR
import QoptPasses

#if canImport(Glibc)
  import Glibc
#endif

/// A pipeline on a model cut into units of decoder blocks, as `qopt plan` writes it into the
/// work folder `OUT.qopt-work/plan.json` and `qopt unit` / `qopt merge` read it back
/// (docs/scale-out.md).
///
/// Unit k runs the whole pipeline with `-blocks=A..B` and keeps only its blocks
/// (`unit-k.ir` and its sidecar); `merge` puts every unit's blocks into the input model and
/// emits it exactly as the same pipeline run as one process would.
struct WorkPlan: Equatable {
  /// Absolute path of the input model.
  var model: String
  var passes: String
  /// Absolute path of the final output.
  var output: String
  /// The emit options as typed (`-emit=…`, `-max-shard-size=…`, …), for `merge`.
  var emitArguments: [String]
  /// The arguments of the equivalent single-process command without `-o` (what its output
  /// manifest records, so that merged and single-process outputs are byte-identical).
  var command: [String]
  var threads: Int
  /// Whether `-threads` was given (BLAS threads fixed) or not (BLAS follows the free cores),
  /// as in the single-process run.
  var threadsFixed: Bool
  var blockCount: Int
  var units: [ClosedRange<Int>]
  /// The cache phase (`qopt cache WORK`): the blocks whose float inputs it stores, every
  /// unit's first block but 0; empty when the plan has none (no `calibrate` in the pipeline,
  /// or one unit).
  var cacheBlocks: [Int]
  /// Why the pipeline splits the way it does, one line per reason.
  var reasons: [String]
  /// Names, sizes and modification times of the input's files (`ModelIdentity`).
  var modelIdentity: String
  /// The data-shards phase (`qopt shard WORK K`): the N of the pipeline's
  /// `calibrate<data-shards=N;partials=DIR>`, 0 when the plan has none.
  var dataShards = 0

  static let fileName = "plan.json"

  /// `OUT.qopt-work` for output `OUT` (a directory output without its trailing slashes).
  static func folder(for output: String) -> String {
    var p = output
    while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
    return p + ".qopt-work"
  }

  /// `unit-K.ir` in `work` (its sidecar is `unit-K.safetensors`).
  static func unitPath(_ work: String, _ index: Int) -> String { work + "/unit-\(index).ir" }

  /// `WORK/cache`, the cache phase's stored block inputs.
  static func cacheFolder(_ work: String) -> String { work + "/cache" }

  /// The blocks the cache phase stores for `units` when the pipeline forwards float blocks
  /// (`calibrate`, block-wise tuning): the first block of every unit but the one at 0.
  static func cacheBlocks(units: [ClosedRange<Int>], forwards: Bool) -> [Int] {
    forwards ? units.map(\.lowerBound).filter { $0 > 0 } : []
  }

  /// What the plan contributes to every cached file's fingerprint (`BlockInputCache`): the
  /// qopt release, the pipeline, the input's identity and the threads.
  var cacheFingerprintBase: String {
    ModelIdentity.hash(
      Array(
        [QoptVersion.current, passes, modelIdentity, "threads=\(threads)"].joined(
          separator: "\n"
        ).utf8))
  }

  /// The cache as the cache phase writes it or a unit reads it.
  func blockInputCache(work: String, writing: Bool) -> BlockInputCache {
    BlockInputCache(
      directory: Self.cacheFolder(work), base: cacheFingerprintBase,
      mode: writing ? .write(blocks: cacheBlocks) : .read)
  }

  /// Contiguous block ranges, as even as possible, at most one unit per block.
  static func split(blocks: Int, tasks: Int) -> [ClosedRange<Int>] {
    let n = min(tasks, blocks)
    return (0..<n).map { k in (k * blocks / n)...((k + 1) * blocks / n - 1) }
  }

  /// What makes unit `index`'s result what it is: the qopt release, the pipeline, the input's
  /// identity, the threads (autoround's checkpoints count them too) and the unit's blocks. A
  /// unit file with another fingerprint is stale.
  func fingerprint(unit index: Int) -> String {
    let r = units[index]
    let text = [
      QoptVersion.current, passes, modelIdentity, "threads=\(threads)",
      "blocks=\(r.lowerBound)..\(r.upperBound)",
    ].joined(separator: "\n")
    return ModelIdentity.hash(Array(text.utf8))
  }

  // MARK: JSON

  var json: JSON {
    .object([
      ("model", .string(model)),
      ("passes", .string(passes)),
      ("output", .string(output)),
      ("emit_arguments", .array(emitArguments.map { .string($0) })),
      ("command", .array(command.map { .string($0) })),
      ("threads", .int(threads)),
      ("threads_fixed", .bool(threadsFixed)),
      ("block_count", .int(blockCount)),
      (
        "units",
        .array(units.map { .array([.int($0.lowerBound), .int($0.upperBound)]) })
      ),
      ("cache_blocks", .array(cacheBlocks.map { .int($0) })),
      ("reasons", .array(reasons.map { .string($0) })),
      ("model_identity", .string(modelIdentity)),
      ("data_shards", .int(dataShards)),
      ("qopt_version", .string(QoptVersion.current)),
    ])
  }

  /// Reads `WORK/plan.json`; a missing or malformed plan is a located error.
  static func read(work: String) throws -> WorkPlan {
    let path = work + "/" + fileName
    guard fileExists(path) else {
      throw WorkError("\(path): no plan here; run qopt plan (or qopt slurm) first")
    }
    func bad(_ what: String) -> WorkError { WorkError("\(path): \(what); rerun qopt plan") }
    let j: JSON
    do { j = try JSON.parse(try readFile(path)) } catch { throw bad("not a plan (\(error))") }
    func string(_ k: String) throws -> String {
      guard let s = j[k]?.stringValue else { throw bad("'\(k)' is missing") }
      return s
    }
    func strings(_ k: String) throws -> [String] {
      guard let a = j[k]?.arrayValue else { throw bad("'\(k)' is missing") }
      return try a.map {
        guard let s = $0.stringValue else { throw bad("'\(k)' holds a non-string") }; return s
      }
    }
    guard let threads = j["threads"]?.intValue, let blocks = j["block_count"]?.intValue,
      let units = j["units"]?.arrayValue
    else { throw bad("'threads', 'block_count' or 'units' is missing") }
    let ranges = try units.map { u -> ClosedRange<Int> in
      guard let p = u.arrayValue, p.count == 2, let a = p[0].intValue, let b = p[1].intValue,
        a >= 0, a <= b, b < blocks
      else { throw bad("a unit is not [first block, last block]") }
      return a...b
    }
    guard try string("qopt_version") == QoptVersion.current else {
      throw bad(
        "it was written by qopt \(try string("qopt_version")), this is \(QoptVersion.current)")
    }
    return WorkPlan(
      model: try string("model"), passes: try string("passes"), output: try string("output"),
      emitArguments: try strings("emit_arguments"), command: try strings("command"),
      threads: threads, threadsFixed: j["threads_fixed"]?.boolValue ?? false, blockCount: blocks,
      units: ranges,
      cacheBlocks: (j["cache_blocks"]?.arrayValue ?? []).compactMap(\.intValue),
      reasons: try strings("reasons"),
      modelIdentity: try string("model_identity"), dataShards: j["data_shards"]?.intValue ?? 0)
  }

  /// Writes `WORK/plan.json` atomically.
  func write(work: String) throws {
    let w = try AtomicFileWriter(path: work + "/" + Self.fileName)
    try w.write(json.pretty + "\n")
    try w.commit()
  }
}

/// The identity of an input model as `qopt unit` and `qopt merge` check it: every file's
/// name, size and modification time (the input file, or the files of an input directory),
/// hashed. Cheap on a 100 GB checkpoint, unlike hashing its bytes; a changed or replaced
/// file makes every unit stale.
enum ModelIdentity {
  static func of(path: String) throws -> String {
    var lines: [String] = []
    func add(_ p: String, _ shown: String) throws {
      var st = stat()
      guard stat(p, &st) == 0 else { throw WorkError("\(p): cannot stat the input") }
      if (st.st_mode & S_IFMT) == S_IFDIR {
        for e in directoryEntries(p).sorted() where !e.hasPrefix(".") {
          try add(p + "/" + e, shown + "/" + e)
        }
      } else {
        lines.append("\(shown) \(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)")
      }
    }
    try add(path, ".")
    // An .ir input's weights are in its sidecar.
    let sidecar = ModuleIO.sidecarPath(for: path)
    if path.hasSuffix(".ir") && fileExists(sidecar) { try add(sidecar, "sidecar") }
    return hash(Array(lines.joined(separator: "\n").utf8))
  }

  /// FNV-1a 64 as 16 hex digits.
  static func hash(_ bytes: [UInt8]) -> String {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
    let s = String(h, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
  }
}

/// An error of the work-folder commands (`plan`, `unit`, `merge`, `slurm`): exit 1.
struct WorkError: DiagnosticError {
  var message: String
  init(_ message: String) { self.message = message }
  var diagnostics: [Diagnostic] { [Diagnostic(.error, message)] }
}

/// An absolute path for `path` (relative to the working directory).
func absolutePath(_ path: String) -> String {
  if path.hasPrefix("/") { return path }
  var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
  guard getcwd(&buf, buf.count) != nil else { return path }
  let cwd = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
  var p = path
  while p.hasPrefix("./") { p.removeFirst(2) }
  return cwd == "/" ? "/" + p : cwd + "/" + p
}
