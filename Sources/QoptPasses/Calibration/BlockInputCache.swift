import QoptIR
import QoptRuntime

#if canImport(Glibc)
  import Glibc
#endif

/// The float inputs of chosen decoder blocks for every calibration window, stored once by the
/// cache phase of a plan (`qopt cache WORK`) so that a unit starting at block A reads them
/// instead of forwarding blocks 0..A-1 again (docs/scale-out.md).
///
/// One file per (forward recipe, block): `DIR/inputs-R-block-A.f32`, a one-line JSON header
/// (fingerprint, recipe, block, samples, tokens, width) and then `samples × tokens × width`
/// little-endian f32, written under a temporary name and renamed into place, so a reader sees
/// no file, the previous one, or the complete new one.
///
/// A *recipe* names how the float forward batches windows and which arithmetic it uses
/// (`batch=8`, `batch=8;numerics=llama.cpp`): two passes whose forwards share a recipe compute
/// the same bits and share the files; `calibrate` (batch 8) and `autoround` (batch 4 by
/// default) do not, so each gets its own, and each reads back exactly what it would have
/// computed. The fingerprint hashes what made the inputs: the plan's (qopt release, pipeline,
/// model identity, threads), the recipe, the block and the calibration windows; a file with
/// another fingerprint is stale: the cache phase recomputes it and a unit refuses it.
public final class BlockInputCache: @unchecked Sendable {
  public enum Mode: Sendable, Equatable {
    /// The cache phase: store the inputs of these blocks (forward no further than the last).
    case write(blocks: [Int])
    /// A unit: read the inputs of its first block when stored.
    case read
  }

  public let directory: String
  /// What the plan contributes to every fingerprint.
  public let base: String
  public let mode: Mode

  public init(directory: String, base: String, mode: Mode) {
    self.directory = directory
    self.base = base
    self.mode = mode
  }

  /// The blocks whose inputs the cache phase stores (empty when reading).
  public var blocksToWrite: [Int] {
    if case .write(let b) = mode { return b.sorted() }
    return []
  }

  public func path(recipe: String, block: Int) -> String {
    let r = recipe.map { $0.isLetter || $0.isNumber ? $0 : "-" }
    return directory + "/inputs-\(String(r))-block-\(block).f32"
  }

  public func fingerprint(recipe: String, block: Int, data: String) -> String {
    fnv1a64(Array([base, recipe, "block=\(block)", data].joined(separator: "\n").utf8))
  }

  /// The header of the file for (`recipe`, `block`), or nil when there is none readable.
  public func header(recipe: String, block: Int) -> Header? {
    Header.read(path(recipe: recipe, block: block))
  }

  /// Whether a file made for exactly this run is stored.
  package func isCurrent(recipe: String, block: Int, data: String) -> Bool {
    header(recipe: recipe, block: block)?.fingerprint
      == fingerprint(recipe: recipe, block: block, data: data)
  }

  /// Stores `store` (the inputs of `block`) atomically.
  package func save(_ store: ActivationStore, recipe: String, block: Int, data: String) throws {
    if mkdir(directory, 0o755) != 0 && errno != EEXIST {
      throw PassError("\(directory): cannot create the cache folder (errno \(errno))")
    }
    let h = Header(
      fingerprint: fingerprint(recipe: recipe, block: block, data: data), recipe: recipe,
      block: block, samples: store.samples, tokens: store.tokens, width: store.width)
    let w = try AtomicFileWriter(path: path(recipe: recipe, block: block))
    try w.write(h.json.serialized + "\n")
    var buffer = [Float](repeating: 0, count: store.sampleFloats)
    for s in 0..<store.samples {
      try buffer.withUnsafeMutableBufferPointer { b in
        try store.read(s, into: b.baseAddress!)  // safe: a sample is non-empty
        try w.write(UnsafeRawBufferPointer(b))
      }
    }
    try w.commit()
  }

  /// The stored inputs of `block` as a store drawing on `budget` (read a sample at a time, so
  /// they spill past the budget like any other), nil when none is stored; a file made for
  /// another run, or of another shape, is an error naming it.
  package func load(
    recipe: String, block: Int, data: String, samples: Int, tokens: Int, width: Int,
    budget: MemoryBudget
  ) throws -> ActivationStore? {
    let p = path(recipe: recipe, block: block)
    guard fileExists(p) else { return nil }
    guard let h = Header.read(p) else { throw PassError("\(p): not a block-input cache file") }
    let want = fingerprint(recipe: recipe, block: block, data: data)
    guard h.fingerprint == want else {
      throw PassError(
        "\(p): the cached inputs of block \(block) were made differently (fingerprint \(h.fingerprint), this run needs \(want): another plan, model, calibration or qopt); rerun the cache phase (qopt cache WORK) or remove the file"
      )
    }
    guard h.samples == samples, h.tokens == tokens, h.width == width else {
      throw PassError(
        "\(p): holds \(h.samples) × \(h.tokens) × \(h.width) inputs, this run needs \(samples) × \(tokens) × \(width)"
      )
    }
    let fd = open(p, O_RDONLY)
    guard fd >= 0 else { throw PassError("\(p): cannot open: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    let store = ActivationStore(tokens: tokens, width: width, budget: budget)
    var buffer = [Float](repeating: 0, count: tokens * width)
    let bytes = tokens * width * 4
    for s in 0..<samples {
      try buffer.withUnsafeMutableBytes { b in
        var done = 0
        while done < bytes {
          // safe: a sample is non-empty
          let got = pread(
            fd, b.baseAddress! + done, bytes - done, off_t(h.dataOffset + s * bytes + done))
          guard got > 0 else { throw PassError("\(p): truncated at sample \(s)") }
          done += got
        }
      }
      try buffer.withUnsafeBufferPointer { try store.append($0.baseAddress!) }  // safe: as above
    }
    return store
  }

  /// The first line of a cache file.
  public struct Header: Equatable, Sendable {
    public var fingerprint: String
    public var recipe: String
    public var block: Int
    public var samples: Int
    public var tokens: Int
    public var width: Int
    /// Where the floats start (after the header line).
    public var dataOffset = 0

    var json: JSON {
      .object([
        ("qopt_block_inputs", .int(1)), ("fingerprint", .string(fingerprint)),
        ("recipe", .string(recipe)), ("block", .int(block)), ("samples", .int(samples)),
        ("tokens", .int(tokens)), ("width", .int(width)),
      ])
    }

    static func read(_ path: String) -> Header? {
      let fd = open(path, O_RDONLY)
      guard fd >= 0 else { return nil }
      defer { close(fd) }
      var head = [UInt8](repeating: 0, count: 4096)
      // safe: a non-empty buffer
      let n = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, 4096, 0) }
      guard n > 0, let end = head[0..<n].firstIndex(of: 10),
        let j = try? JSON.parse(Array(head[0..<end])), j["qopt_block_inputs"]?.intValue == 1,
        let f = j["fingerprint"]?.stringValue, let r = j["recipe"]?.stringValue,
        let b = j["block"]?.intValue, let s = j["samples"]?.intValue,
        let t = j["tokens"]?.intValue, let w = j["width"]?.intValue
      else { return nil }
      return Header(
        fingerprint: f, recipe: r, block: b, samples: s, tokens: t, width: w, dataOffset: end + 1)
    }
  }
}

extension BlockInputCache {
  /// The recipe of `exec.forward(all:batch:)` with the executor's default arithmetic (what
  /// `autoround` and `gptq` use to forward float blocks).
  static func recipe(batch: Int) -> String { "batch=\(batch)" }

  /// The cache phase of a block-wise pass: forwards the float blocks from `x` (block 0's
  /// inputs) `batch` windows at a time and stores the inputs of every block to write, up to
  /// the last of them; skipped when every file is current.
  func writePrefix(
    _ model: ModelBlocks, _ module: Module, from x: ActivationStore, batch: Int, data: String,
    budget: MemoryBudget, context: PassContext
  ) throws {
    let blocks = blocksToWrite
    let recipe = Self.recipe(batch: batch)
    guard let last = blocks.last else { return }
    if blocks.allSatisfy({ isCurrent(recipe: recipe, block: $0, data: data) }) {
      context.remark("the inputs of blocks \(blocks) (\(recipe)) are stored already")
      return
    }
    let phase = Progress.shared.phase("\(context.pass): float forward, block", total: last)
    defer { phase.close() }
    var x = x
    for bi in 0...last {
      if blocks.contains(bi) { try save(x, recipe: recipe, block: bi, data: data) }
      if bi == last { break }
      phase.step(bi, "\(x.samples) windows")
      let exec = try BlockExecutor(function: model.blocks[bi], module: module)
      let next = ActivationStore(tokens: x.tokens, width: x.width, budget: budget)
      try exec.forward(all: x, batch: batch, into: next)
      x = next
    }
    context.remark("stored the inputs of blocks \(blocks) (\(recipe)) in \(directory)")
  }

  /// A unit's block-wise pass: the stored float inputs of its first block (`-blocks=A..B`,
  /// A > 0) as its `forward(all:batch:)` would compute them, or nil (then it forwards blocks
  /// 0..A-1 itself, and says so).
  func readFirst(
    like x: ActivationStore, batch: Int, data: String, budget: MemoryBudget,
    context: PassContext
  ) throws -> (block: Int, inputs: ActivationStore)? {
    guard mode == .read, let a = context.blocks?.range.lowerBound, a > 0 else { return nil }
    let recipe = Self.recipe(batch: batch)
    guard
      let s = try load(
        recipe: recipe, block: a, data: data, samples: x.samples, tokens: x.tokens,
        width: x.width, budget: budget)
    else {
      context.remark(
        "no stored inputs of block \(a) (\(recipe)) in \(directory): forwarding blocks 0..\(a - 1)"
      )
      return nil
    }
    context.remark("read the inputs of block \(a) (\(recipe)) from \(directory)")
    return (a, s)
  }
}
