import CQoptSystem
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A buffered writer to a new file that only becomes visible under its final name when
/// `commit()` renames it there: a failure, or a kill, never leaves a partial output behind.
public final class AtomicFileWriter {
  public let path: String
  public let temporaryPath: String
  private var fd: Int32
  private var buffer: [UInt8] = []
  private var committed = false
  public private(set) var bytesWritten = 0
  /// The thread that makes positional writes, started by the first one.
  private let positional = Mutex<PositionalWriter?>(nil)

  /// Creates the temporary file beside `path`.
  public init(path: String) throws(StorageError) {
    self.path = path
    let dir = parentDirectory(of: path)
    let base = String(path.split(separator: "/", omittingEmptySubsequences: false).last ?? "")
    temporaryPath = (dir.isEmpty ? "" : dir + "/") + ".\(base).qopt-tmp-\(getpid())"
    for stale in staleTemporaries(of: path, kind: "tmp") { unlink(stale) }
    fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else {
      throw StorageError(file: path, offset: nil, message: "cannot create: \(String(cString: strerror(errno)))")
    }
    buffer.reserveCapacity(1 << 20)
  }

  deinit {
    if !committed { abandon() }
  }

  public func write(_ bytes: UnsafeRawBufferPointer) throws(StorageError) {
    if buffer.count + bytes.count > (1 << 20) { try flush() }
    if bytes.count >= (1 << 20) {
      try writeAll(bytes)
    } else {
      buffer.append(contentsOf: bytes)
    }
    bytesWritten += bytes.count
  }

  public func write(_ bytes: [UInt8]) throws(StorageError) {
    try withBytes(bytes) { b throws(StorageError) in try write(b) }
  }

  public func write(_ text: String) throws(StorageError) {
    try write(Array(text.utf8))
  }

  /// Writes `bytes` at byte `offset` of the file, leaving the sequential position alone.
  /// Safe from several threads at once for disjoint ranges (it touches no buffer); `flush()`
  /// first when sequential writes came before.
  ///
  /// The bytes are copied and written by a thread of the writer's own (`PositionalWriter`):
  /// they are in the file once `flush()`, `moveSequentialPosition` or `commit()` returns, and a
  /// failure is thrown by one of those or by a later positional write.
  public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(StorageError) {
    let writer = try positional.withLock { (w: inout PositionalWriter?) throws(StorageError) -> PositionalWriter in
      if let w { return w }
      let made = try PositionalWriter(fd: fd, path: path)
      w = made
      return made
    }
    try writer.write(bytes, at: offset)
  }

  /// Waits for the queued positional writes; throws the first failure among them.
  private func drainPositional() throws(StorageError) {
    try positional.withLock { $0 }?.drain()
  }

  /// Ends the positional writing thread (before the file is closed).
  private func stopPositional() {
    positional.withLock { w in
      w?.stop()
      w = nil
    }
  }

  /// Makes the next sequential write land at byte `offset` (after positional writes filled
  /// the file up to there).
  public func moveSequentialPosition(to offset: Int) throws(StorageError) {
    try flush()
    guard lseek(fd, off_t(offset), SEEK_SET) >= 0 else {
      throw StorageError(file: path, offset: offset, message: "cannot seek: \(String(cString: strerror(errno)))")
    }
    bytesWritten = offset
  }

  /// Allocates the file's blocks up to `size` bytes ahead of the writes (the size a writer
  /// knows from its layout), where the file system can; nothing is written and the size is
  /// unchanged.
  ///
  /// Why: ext4 otherwise reserves and maps blocks write by write (delayed allocation): writing
  /// a 109 MiB file in 256 KiB chunks took 24 ms that way and 17 ms after one `fallocate`
  /// (FALLOC_FL_KEEP_SIZE), on the same machine. A file system without it (or a failure) just
  /// leaves the writes to allocate, as before: it is never emulated by writing zeros.
  public func reserve(_ size: Int) {
    guard size > 0, fd >= 0 else { return }
    _ = qopt_reserve_blocks(fd, off_t(size))
  }

  /// Sets the file's size (a longer file reads as zeros past what was written).
  public func setLength(_ size: Int) throws(StorageError) {
    try drainPositional()
    guard ftruncate(fd, off_t(size)) == 0 else {
      throw StorageError(file: path, offset: size, message: "cannot set the size: \(String(cString: strerror(errno)))")
    }
  }

  /// Writes out what the buffer holds.
  public func flush() throws(StorageError) {
    try drainPositional()
    let b = buffer
    buffer.removeAll(keepingCapacity: true)
    try withBytes(b) { raw throws(StorageError) in try writeAll(raw) }
  }

  private func writeAll(_ raw: UnsafeRawBufferPointer) throws(StorageError) {
    var done = 0
    while done < raw.count {
      let n = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)  // safe: count > 0
      if n < 0 {
        if errno == EINTR { continue }
        throw StorageError(file: path, offset: bytesWritten, message: "write failed: \(String(cString: strerror(errno)))")
      }
      done += n
    }
  }

  /// Flushes, closes and renames the file to its final name.
  public func commit() throws(StorageError) {
    try flush()
    stopPositional()
    close(fd)
    fd = -1
    guard rename(temporaryPath, path) == 0 else {
      let e = String(cString: strerror(errno))
      unlink(temporaryPath)
      throw StorageError(file: path, offset: nil, message: "cannot rename into place: \(e)")
    }
    committed = true
  }

  /// Closes and deletes the temporary file.
  public func abandon() {
    stopPositional()
    if fd >= 0 { close(fd) }
    fd = -1
    unlink(temporaryPath)
    committed = true
  }
}

/// The directory part of `path` ("" for a bare file name).
public func parentDirectory(of path: String) -> String {
  guard let slash = path.lastIndex(of: "/") else { return "" }
  return slash == path.startIndex ? "/" : String(path[..<slash])
}

/// Whether a file or directory exists at `path`.
public func fileExists(_ path: String) -> Bool {
  var st = stat()
  return stat(path, &st) == 0
}

/// Reads a whole (small) file; throws a located error when it cannot.
public func readFile(_ path: String) throws(StorageError) -> [UInt8] {
  let f = try MappedFile(path: path)
  return Array(f.all)
}

/// The temporaries `.BASE.qopt-KIND-PID` beside `path` whose process is gone (a qopt killed
/// while writing leaves its temporary behind; the next write of the same output removes it).
/// A live PID, even one reused by another program, keeps its file.
public func staleTemporaries(of path: String, kind: String) -> [String] {
  let dir = parentDirectory(of: path)
  let base = String(path.split(separator: "/", omittingEmptySubsequences: false).last ?? "")
  let prefix = ".\(base).qopt-\(kind)-"
  guard !base.isEmpty, let d = opendir(dir.isEmpty ? "." : dir) else { return [] }
  defer { closedir(d) }
  var out: [String] = []
  while let e = readdir(d) {
    let name = direntName(e)
    guard name.hasPrefix(prefix), let pid = pid_t(name.dropFirst(prefix.count)), pid != getpid() else { continue }
    if kill(pid, 0) != 0 && errno == ESRCH { out.append((dir.isEmpty ? "" : dir + "/") + name) }
  }
  return out
}
