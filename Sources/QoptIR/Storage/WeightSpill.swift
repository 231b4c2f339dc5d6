import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A folder that takes the quantized weights passes make and hands them back memory-mapped.
///
/// Why: a pass such as `rtn` keeps one unpacked i8 code per weight until the backend packs
/// them — 7.5 GB for an 8B model, more than the whole bf16 checkpoint is worth holding. Spilled,
/// each tensor's codes go to a file as soon as they are made (the kernel writes them back from
/// the page cache, outside the process's resident set) and come back as a read-only mapping
/// that the backend pages in, packs, and releases one tensor at a time. Each file is unlinked
/// as soon as it is mapped, so nothing is left behind, whatever ends the process.
public final class WeightSpill: @unchecked Sendable {
  public let directory: String
  /// Tensors smaller than this stay in memory (scales of small models, norms).
  public let minimumBytes: Int
  private let state = Mutex<(files: Int, bytes: Int, error: StorageError?)>((0, 0, nil))

  /// Spills into `directory` (created if missing).
  public init(directory: String, minimumBytes: Int = 1 << 20) {
    self.directory = directory
    self.minimumBytes = minimumBytes
    mkdir(directory, 0o755)
  }

  /// Bytes written so far.
  public var bytesSpilled: Int { state.withLock { $0.bytes } }

  /// The first write that failed (the tensor then stayed in memory), if any.
  public var firstError: StorageError? { state.withLock { $0.error } }

  /// `t` as a mapping of a spill file, or `t` itself when it is small, already mapped, or the
  /// write fails (recorded in `firstError`).
  public func spill(_ t: TensorData) -> TensorData {
    guard !t.isMemoryMapped, t.byteCount >= minimumBytes else { return t }
    let n = state.withLock { s in
      s.files += 1
      return s.files
    }
    let path = directory + "/w\(getpid())-\(n).bin"
    do throws(StorageError) {
      let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
      guard fd >= 0 else {
        throw StorageError(
          file: path, offset: nil, message: "cannot create: \(String(cString: strerror(errno)))")
      }
      defer { close(fd) }
      try t.withUnsafeBytes { raw throws(StorageError) in
        var done = 0
        while done < raw.count {
          let r = write(fd, raw.baseAddress! + done, raw.count - done)  // safe: count > 0
          guard r > 0 else {
            unlink(path)
            throw StorageError(
              file: path, offset: done,
              message: "write failed: \(String(cString: strerror(errno)))")
          }
          done += r
        }
      }
      let file = try MappedFile(path: path)
      unlink(path)
      state.withLock { $0.bytes += t.byteCount }
      return TensorData(
        dtype: t.dtype, shape: t.shape, file: file, offset: 0, byteCount: t.byteCount)
    } catch {
      state.withLock { s in if s.error == nil { s.error = error } }
      return t
    }
  }

  /// The quantized tensor with its codes and scales spilled.
  public func spill(_ q: QuantizedTensor) -> QuantizedTensor {
    var q = q
    q.codes = spill(q.codes)
    q.scale = spill(q.scale)
    return q
  }
}
