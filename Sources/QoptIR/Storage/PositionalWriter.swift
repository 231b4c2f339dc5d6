import Dispatch
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Positional writes to one file, made by a thread of their own: a caller's bytes are copied
/// into a queued buffer and the caller goes on.
///
/// Why: the kernel takes a file's lock for every buffered write, so threads that each make a
/// chunk and write it wait for each other — spinning on that lock, a tenth of the CPU of the
/// shared 135M model's W4A16 emit on two cores — and a chunk's maker idles while the kernel
/// copies its bytes. With one thread writing, the makers go on with the next chunks while the
/// kernel copies the last ones.
final class PositionalWriter: @unchecked Sendable {
  /// The largest write that is queued (bigger ones are written by the caller, as before) and
  /// the buffers that can wait at once: at most 8 MiB of copies.
  static let bufferBytes = 1 << 20
  static let buffers = 8

  /// A queued buffer (a raw pointer, handed between threads under the queue's lock).
  private struct Buffer: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
  }

  private struct Item: @unchecked Sendable {
    var offset: Int
    var count: Int
    var buffer: UnsafeMutableRawPointer?
    /// Signalled when the writer reaches this item (a drain or stop marker).
    var reached: DispatchSemaphore?
    var stop = false
  }

  private let fd: Int32
  private let path: String
  private let queue = Mutex<[Item]>([])
  private let free = Mutex<[Buffer]>([])
  private let items = DispatchSemaphore(value: 0)
  private let slots = DispatchSemaphore(value: PositionalWriter.buffers)
  private let failure = Mutex<StorageError?>(nil)
  private var thread: pthread_t?

  /// Starts the writing thread for `fd` (owned by the caller; `stop()` before closing it).
  init(fd: Int32, path: String) throws(StorageError) {
    self.fd = fd
    self.path = path
    var t = pthread_t()
    let context = Unmanaged.passRetained(self).toOpaque()
    let rc = pthread_create(
      &t, nil,
      { arg in
        // safe: `arg` is the retained `context` passed below.
        let w = Unmanaged<PositionalWriter>.fromOpaque(arg!).takeRetainedValue()
        w.run()
        return nil
      }, context)
    guard rc == 0 else {
      Unmanaged<PositionalWriter>.fromOpaque(context).release()
      throw StorageError(
        file: path, offset: nil,
        message: "cannot start a writing thread: \(String(cString: strerror(rc)))")
    }
    thread = t
  }

  /// Queues `bytes` for byte `offset` (written directly when larger than a buffer). Throws
  /// the first failure of an earlier queued write.
  func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(StorageError) {
    if let e = failure.withLock({ $0 }) { throw e }
    guard bytes.count > 0 else { return }
    if bytes.count > Self.bufferBytes {
      try Self.writeAll(fd, bytes, at: offset, path: path)
      return
    }
    slots.wait()
    let b =
      free.withLock { $0.popLast() }?.pointer
      ?? UnsafeMutableRawPointer.allocate(byteCount: Self.bufferBytes, alignment: 64)
    b.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)  // safe: count > 0
    queue.withLock { $0.append(Item(offset: offset, count: bytes.count, buffer: b)) }
    items.signal()
  }

  /// Returns once every write queued before it is in the file; throws the first failure.
  func drain() throws(StorageError) {
    let reached = DispatchSemaphore(value: 0)
    queue.withLock { $0.append(Item(offset: 0, count: 0, buffer: nil, reached: reached)) }
    items.signal()
    reached.wait()
    if let e = failure.withLock({ $0 }) { throw e }
  }

  /// Writes what is queued and ends the thread (failures are left to `drain`).
  func stop() {
    guard let t = thread else { return }
    queue.withLock { $0.append(Item(offset: 0, count: 0, buffer: nil, stop: true)) }
    items.signal()
    pthread_join(t, nil)
    thread = nil
    free.withLock { list in
      for b in list { b.pointer.deallocate() }
      list.removeAll()
    }
  }

  private func run() {
    while true {
      items.wait()
      let item = queue.withLock { $0.removeFirst() }
      if item.stop { return }
      if let r = item.reached {
        r.signal()
        continue
      }
      guard let b = item.buffer else { continue }
      if failure.withLock({ $0 == nil }) {
        do throws(StorageError) {
          try Self.writeAll(
            fd, UnsafeRawBufferPointer(start: b, count: item.count), at: item.offset, path: path)
        } catch {
          failure.withLock { if $0 == nil { $0 = error } }
        }
      }
      free.withLock { $0.append(Buffer(pointer: b)) }
      slots.signal()
    }
  }

  /// `pwrite` until every byte is written (retrying interrupted and partial writes).
  static func writeAll(
    _ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, path: String
  ) throws(StorageError) {
    var done = 0
    while done < bytes.count {
      // safe: count > 0, so the buffer has a base address.
      let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
      if n < 0 {
        if errno == EINTR { continue }
        throw StorageError(
          file: path, offset: offset + done,
          message: "write failed: \(String(cString: strerror(errno)))")
      }
      done += n
    }
  }
}
