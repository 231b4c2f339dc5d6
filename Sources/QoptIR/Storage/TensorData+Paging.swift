#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

extension TensorData {
  /// Whether the bytes are a slice of a memory-mapped file (not owned heap memory).
  public var isMemoryMapped: Bool {
    if case .mapped = storage { return true }
    return false
  }

  /// Drops the process's resident pages of a memory-mapped tensor, or the decoded copy of a
  /// deferred one (no-op for owned bytes).
  ///
  /// Streaming writers call it once a tensor has been encoded, so that reading a checkpoint
  /// larger than memory does not keep every page it touched in the resident set: the mapping is
  /// read-only and private, so the pages are simply read from the file again if touched again.
  public func releasePages() {
    if case .deferred(let d) = storage {
      d.release()
      d.source?.releasePages()
      d.releaseInput?()
      return
    }
    releasePages(0..<byteCount)
  }

  /// Drops the resident pages of bytes `range` of a memory-mapped tensor (no-op otherwise):
  /// a writer copying a large mapped tensor releases each chunk once it is written.
  public func releasePages(_ range: Range<Int>) {
    guard case .mapped(let file, let offset0) = storage, let base = file.base, !range.isEmpty
    else { return }
    let offset = offset0 + range.lowerBound
    let byteCount = range.count
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let start = (Int(bitPattern: base) + offset + page - 1) / page * page
    let end = (Int(bitPattern: base) + offset + byteCount) / page * page
    guard end > start, let p = UnsafeMutableRawPointer(bitPattern: start) else { return }
    madvise(p, end - start, MADV_DONTNEED)
  }
}
