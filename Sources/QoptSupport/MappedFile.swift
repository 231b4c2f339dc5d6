#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A read-only memory mapping of a whole file. Mapping reads nothing: pages are faulted in
/// only when a tensor's bytes are touched, so opening a 1 GB checkpoint costs no memory.
public final class MappedFile: @unchecked Sendable {
  public let path: String
  public let base: UnsafeRawPointer?
  public let size: Int

  /// Maps `path`; throws a `StorageError` naming the file when it cannot be opened.
  public init(path: String) throws(StorageError) {
    self.path = path
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else {
      throw StorageError(file: path, offset: nil, message: "cannot open: \(String(cString: strerror(errno)))")
    }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else {
      throw StorageError(file: path, offset: nil, message: "cannot stat: \(String(cString: strerror(errno)))")
    }
    guard (st.st_mode & S_IFMT) == S_IFREG else {
      throw StorageError(file: path, offset: nil, message: "not a regular file")
    }
    size = Int(st.st_size)
    if size == 0 {
      base = nil
      return
    }
    let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
    guard let p, p != MAP_FAILED else {
      throw StorageError(file: path, offset: nil, message: "cannot map: \(String(cString: strerror(errno)))")
    }
    base = UnsafeRawPointer(p)
  }

  deinit {
    if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
  }

  /// The bytes `[offset, offset + count)`; the caller checked the range.
  public func bytes(offset: Int, count: Int) -> UnsafeRawBufferPointer {
    guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
    return UnsafeRawBufferPointer(start: base + offset, count: count)
  }

  public var all: UnsafeRawBufferPointer { bytes(offset: 0, count: size) }
}

/// A problem reading or writing a tensor file, located by file and byte offset (or tensor name).
public struct StorageError: DiagnosticError, Hashable, Sendable {
  public var file: String
  public var offset: Int?
  public var message: String

  public init(file: String, offset: Int?, message: String) {
    self.file = file
    self.offset = offset
    self.message = message
  }

  public var diagnostics: [Diagnostic] {
    let loc = SourceLocation.byteOffset(offset ?? 0, in: file)
    return [Diagnostic(.error, message, at: offset == nil ? SourceLocation(file: file, line: 0, column: 0) : loc)]
  }

  public var description: String {
    if let offset { return "\(file):@\(offset): error: \(message)" }
    return "\(file): error: \(message)"
  }
}
