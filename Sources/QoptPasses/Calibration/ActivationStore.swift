#if canImport(Glibc)
  import Glibc
#endif

/// The bytes of activations the stores of one calibration may keep in memory together
/// (`calibrate<memory-budget>`): `calibrate`'s block inputs and intermediate block outputs and
/// `autoround`'s targets and quantized inputs all draw from it, so the whole pipeline's cached
/// activations stay within it; what does not fit spills to disk.
public final class MemoryBudget: @unchecked Sendable {
  public let bytes: Int
  /// Bytes currently held in memory by live stores.
  public private(set) var used = 0

  public init(bytes: Int) { self.bytes = bytes }

  /// Takes `n` bytes if they fit.
  func take(_ n: Int) -> Bool {
    guard n <= bytes - used else { return false }
    used += n
    return true
  }

  func give(_ n: Int) { used -= n }
}

/// Per-sample activation rows (`samples × tokens × width` floats) kept in memory while its
/// `MemoryBudget` allows; later samples go to an unlinked temporary file and are read back one
/// sample at a time (`read`), so nothing ever holds all of them at once.
///
/// Calibration caches block inputs here; at 32 × 512 × 576 floats (SmolLM2) that is 38 MB,
/// but 128 × 2048 samples of a 4096-wide model are 4 GiB, which must not have to fit in RAM.
public final class ActivationStore: @unchecked Sendable {
  public let tokens: Int
  public let width: Int
  public private(set) var samples = 0
  /// The budget this store draws on.
  public let budget: MemoryBudget
  /// The in-memory samples: always a prefix (once one spills, all later ones do).
  private var memory: [[Float]] = []
  private var fd: Int32 = -1
  public var sampleFloats: Int { tokens * width }
  /// Samples that were written to the spill file.
  public var spilled: Int { samples - memory.count }

  /// A store drawing on `budget`, shared with other stores.
  public init(tokens: Int, width: Int, budget: MemoryBudget) {
    self.tokens = tokens
    self.width = width
    self.budget = budget
  }

  /// A store with a budget of its own.
  public convenience init(tokens: Int, width: Int, budgetBytes: Int) {
    self.init(tokens: tokens, width: width, budget: MemoryBudget(bytes: budgetBytes))
  }

  deinit {
    if fd >= 0 { close(fd) }
    budget.give(memory.count * sampleFloats * 4)
  }

  /// Appends `count` samples of `sampleFloats` values each.
  public func append(_ values: UnsafePointer<Float>, samples count: Int = 1) throws {
    let n = sampleFloats
    for k in 0..<count {
      let p = values + k * n
      if memory.count == samples && budget.take(n * 4) {
        memory.append(Array(UnsafeBufferPointer(start: p, count: n)))
      } else {
        try spill(p)
      }
      samples += 1
    }
  }

  private func spill(_ p: UnsafePointer<Float>) throws {
    let n = sampleFloats
    if fd < 0 {
      // In $TMPDIR, as mktemp(1) puts temporary files (/tmp when unset).
      let dir = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
      var template = Array("\(dir)/qopt-activations-XXXXXX".utf8CString)
      fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }  // safe: non-empty literal
      guard fd >= 0 else { throw PassError("cannot create a spill file in \(dir): \(String(cString: strerror(errno)))") }
      template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }  // safe: as above
    }
    var done = 0
    let raw = UnsafeRawPointer(p)
    while done < n * 4 {
      let w = pwrite(fd, raw + done, n * 4 - done, off_t((samples - memory.count) * n * 4 + done))
      guard w > 0 else { throw PassError("writing the activation spill file failed: \(String(cString: strerror(errno)))") }
      done += w
    }
  }

  /// Copies sample `i` into `out` (`sampleFloats` values).
  public func read(_ i: Int, into out: UnsafeMutablePointer<Float>) throws {
    let n = sampleFloats
    precondition(i >= 0 && i < samples, "activation sample index")
    if i < memory.count {
      memory[i].withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: n) }  // safe: samples are non-empty
      return
    }
    var done = 0
    let raw = UnsafeMutableRawPointer(out)
    while done < n * 4 {
      let got = pread(fd, raw + done, n * 4 - done, off_t((i - memory.count) * n * 4 + done))
      guard got > 0 else { throw PassError("reading the activation spill file failed: \(got < 0 ? String(cString: strerror(errno)) : "unexpected end of file")") }
      done += got
    }
  }

  /// Copies the samples `indices` one after another into `out`.
  public func read(_ indices: some Sequence<Int>, into out: UnsafeMutablePointer<Float>) throws {
    for (j, i) in indices.enumerated() { try read(i, into: out + j * sampleFloats) }
  }

  /// A store holding `values` (`samples × sampleFloats`) in memory, outside any budget.
  public static func from(_ values: [Float], tokens: Int, width: Int) -> ActivationStore {
    let s = ActivationStore(tokens: tokens, width: width, budgetBytes: Int.max)
    let n = max(1, tokens * width)
    s.memory = stride(from: 0, to: values.count - n + 1, by: n).map { Array(values[$0..<($0 + n)]) }
    s.samples = s.memory.count
    _ = s.budget.take(s.samples * n * 4)
    return s
  }

  /// All samples in order, `samples × sampleFloats` floats (tests and small stores only: this
  /// is the one call that holds everything at once).
  public func all() throws -> [Float] {
    var out = [Float](repeating: 0, count: samples * sampleFloats)
    try out.withUnsafeMutableBufferPointer { b in
      guard let p = b.baseAddress else { return }
      try read(0..<samples, into: p)
    }
    return out
  }
}
