#if canImport(Glibc)
  import Glibc
#endif

/// Per-sample activation rows (`samples × tokens × width` floats) kept in memory up to a byte
/// budget; samples beyond it go to an unlinked temporary file and are read back on demand.
///
/// Calibration caches block inputs here; at 32 × 512 × 576 floats (SmolLM2) that is 38 MB,
/// but 128 × 2048 samples of a 4096-wide model are 4 GiB, which must not have to fit in RAM.
public final class ActivationStore: @unchecked Sendable {
  public let tokens: Int
  public let width: Int
  public private(set) var samples = 0
  private let budget: Int
  private var memory: [Float] = []
  private var inMemory = 0
  private var fd: Int32 = -1
  public var sampleFloats: Int { tokens * width }
  /// Samples that were written to the spill file.
  public var spilled: Int { samples - inMemory }

  public init(tokens: Int, width: Int, budgetBytes: Int) {
    self.tokens = tokens
    self.width = width
    budget = budgetBytes
  }

  deinit { if fd >= 0 { close(fd) } }

  /// Appends one sample of `sampleFloats` values.
  public func append(_ values: UnsafePointer<Float>) throws {
    let n = sampleFloats
    if (inMemory + 1) * n * 4 <= budget && inMemory == samples {
      memory.append(contentsOf: UnsafeBufferPointer(start: values, count: n))
      inMemory += 1
    } else {
      if fd < 0 {
        // In $TMPDIR, as mktemp(1) puts temporary files (/tmp when unset).
        let dir = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(dir)/qopt-activations-XXXXXX".utf8CString)
        fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }  // safe: non-empty literal
        guard fd >= 0 else { throw PassError(pass: "calibrate", "cannot create a spill file in \(dir): \(String(cString: strerror(errno)))") }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }  // safe: as above
      }
      let offset = off_t((samples - inMemory) * n * 4)
      let written = pwrite(fd, values, n * 4, offset)
      guard written == n * 4 else { throw PassError(pass: "calibrate", "writing the activation spill file failed") }
    }
    samples += 1
  }

  /// Copies sample `i` into `out` (`sampleFloats` values).
  public func read(_ i: Int, into out: UnsafeMutablePointer<Float>) {
    let n = sampleFloats
    if i < inMemory {
      memory.withUnsafeBufferPointer { out.update(from: $0.baseAddress! + i * n, count: n) }  // safe: i < inMemory
    } else {
      let got = pread(fd, out, n * 4, off_t((i - inMemory) * n * 4))
      precondition(got == n * 4, "activation spill file read failed")
    }
  }

  /// A store holding `values` (`samples × sampleFloats`) in memory.
  public static func from(_ values: [Float], tokens: Int, width: Int) -> ActivationStore {
    let s = ActivationStore(tokens: tokens, width: width, budgetBytes: Int.max)
    s.memory = values
    s.samples = values.count / max(1, tokens * width)
    s.inMemory = s.samples
    return s
  }

  /// All samples in order, `samples × sampleFloats` floats.
  public func all() -> [Float] {
    var out = [Float](repeating: 0, count: samples * sampleFloats)
    out.withUnsafeMutableBufferPointer { b in
      for i in 0..<samples { read(i, into: b.baseAddress! + i * sampleFloats) }  // safe: non-empty when samples > 0
    }
    return out
  }
}
