import Dispatch
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A parsed safetensors file: its tensors (memory-mapped, nothing read yet) and metadata.
///
/// Validation follows the reference reader: header length bounds, UTF-8 JSON, known dtypes,
/// shape × dtype size = byte count (overflow-checked), ranges that tile the data buffer
/// exactly, no duplicate names. Every error names the file and a byte offset.
public struct SafetensorsFile {
  /// The largest header the reference accepts (100 MB).
  public static let maxHeaderSize = 100_000_000

  public let path: String
  public let file: MappedFile
  /// Tensors in header order.
  public let tensors: [(name: String, data: TensorData)]
  public let metadata: [(String, String)]

  public init(path: String) throws(StorageError) {
    try self.init(file: MappedFile(path: path))
  }

  public init(file: MappedFile) throws(StorageError) {
    self.file = file
    self.path = file.path
    func fail(_ offset: Int?, _ m: String) -> StorageError { StorageError(file: file.path, offset: offset, message: m) }
    let size = file.size
    guard size >= 8 else { throw fail(0, "file is \(size) bytes, too short for a safetensors header length") }
    let raw = file.all
    let n64 = raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
    guard n64 <= UInt64(Self.maxHeaderSize) else {
      throw fail(0, "header length \(n64) exceeds the limit of \(Self.maxHeaderSize) bytes")
    }
    let n = Int(n64)
    guard 8 + n <= size else { throw fail(0, "header length \(n) runs past the end of the file (\(size) bytes)") }
    let headerBytes = UnsafeRawBufferPointer(rebasing: raw[8..<(8 + n)])
    let header: JSON
    do { header = try JSON.parse(headerBytes) } catch {
      throw fail(8 + error.offset, "header is not valid JSON: \(error.message)")
    }
    guard let pairs = header.objectPairs else { throw fail(8, "header is not a JSON object") }
    let dataStart = 8 + n
    let dataSize = size - dataStart
    var seen = Set<String>()
    var entries: [(name: String, dtype: DType, shape: [Int], begin: Int, end: Int)] = []
    var meta: [(String, String)] = []
    for (name, value) in pairs {
      guard seen.insert(name).inserted else { throw fail(8, "duplicate tensor name '\(name)' in header") }
      if name == "__metadata__" {
        guard let m = value.objectPairs else { throw fail(8, "__metadata__ is not an object") }
        for (k, v) in m {
          guard let s = v.stringValue else { throw fail(8, "__metadata__ value for '\(k)' is not a string") }
          meta.append((k, s))
        }
        continue
      }
      guard let dtName = value["dtype"]?.stringValue else { throw fail(8, "tensor '\(name)': missing 'dtype'") }
      guard let dtype = DType(safetensorsName: dtName) else {
        throw fail(8, "tensor '\(name)': unsupported dtype '\(dtName)'")
      }
      guard let shapeJ = value["shape"]?.arrayValue else { throw fail(8, "tensor '\(name)': missing 'shape'") }
      var shape: [Int] = []
      var elements = 1
      for d in shapeJ {
        guard let v = d.intValue, v >= 0 else { throw fail(8, "tensor '\(name)': shape entries must be non-negative integers") }
        shape.append(v)
        let (p, o) = elements.multipliedReportingOverflow(by: v)
        guard !o else { throw fail(8, "tensor '\(name)': shape \(shape) overflows") }
        elements = p
      }
      guard let offs = value["data_offsets"]?.arrayValue, offs.count == 2,
        let b = offs[0].intValue, let e = offs[1].intValue, b >= 0, e >= b
      else { throw fail(8, "tensor '\(name)': data_offsets must be two integers [begin, end] with begin <= end") }
      let (bytes, o) = elements.multipliedReportingOverflow(by: dtype.byteSize)
      guard !o, bytes == e - b else {
        throw fail(dataStart + b, "tensor '\(name)': \(dtName) \(shape) needs \(o ? "too many" : String(bytes)) bytes but data_offsets span \(e - b)")
      }
      guard e <= dataSize else {
        throw fail(dataStart + b, "tensor '\(name)': data_offsets [\(b), \(e)] run past the end of the data (\(dataSize) bytes)")
      }
      entries.append((name, dtype, shape, b, e))
    }
    // The ranges must tile the data buffer: no gaps, no overlaps, nothing after the last one.
    var expected = 0
    for t in entries.sorted(by: { ($0.begin, $0.end) < ($1.begin, $1.end) }) {
      guard t.begin == expected else {
        throw fail(dataStart + t.begin, t.begin < expected
          ? "tensor '\(t.name)' overlaps the previous tensor (begins at \(t.begin), previous ends at \(expected))"
          : "gap in data before tensor '\(t.name)' (begins at \(t.begin), previous ends at \(expected))")
      }
      expected = t.end
    }
    guard expected == dataSize else {
      throw fail(dataStart + expected, "data buffer has \(dataSize - expected) bytes after the last tensor")
    }
    tensors = entries.map {
      ($0.name, TensorData(dtype: $0.dtype, shape: $0.shape, file: file, offset: dataStart + $0.begin, byteCount: $0.end - $0.begin))
    }
    metadata = meta
  }

  public func tensor(named name: String) -> TensorData? {
    tensors.first { $0.name == name }?.data
  }
}

/// A tensor to be written: its header facts up front, its bytes produced when its turn comes,
/// so writers stream one tensor at a time.
public struct SafetensorsEntry {
  public var name: String
  public var dtype: DType
  public var shape: [Int]
  public var produce: () throws -> TensorData
  /// When set, the writer calls this instead of `produce`: it hands the tensor's bytes to the
  /// sink a chunk at a time (the chunk's offset within the tensor, its bytes), from any number
  /// of threads, every byte exactly once. Why: a tensor packed or converted as it is written
  /// (int4 codes into words, f32 into bf16) then needs only each thread's chunk buffer, not a
  /// whole new tensor — whose fresh pages cost more page faults than the packing itself.
  public var stream: (@Sendable (_ sink: Sink) throws -> Void)?

  /// Takes `bytes` for the tensor's byte range starting at `offset`; safe from several threads.
  public typealias Sink = @Sendable (_ offset: Int, _ bytes: UnsafeRawBufferPointer) throws -> Void

  public init(name: String, dtype: DType, shape: [Int], produce: @escaping () throws -> TensorData) {
    self.name = name
    self.dtype = dtype
    self.shape = shape
    self.produce = produce
    self.stream = nil
  }

  /// An entry whose bytes `stream` hands to the writer chunk by chunk (see `stream`); `produce`
  /// collects them into one tensor for readers that want it whole.
  public init(
    name: String, dtype: DType, shape: [Int],
    stream: @escaping @Sendable (_ sink: Sink) throws -> Void
  ) {
    let n = shape.reduce(1, *) * dtype.byteSize
    self.init(name: name, dtype: dtype, shape: shape) {
      let collected = Mutex<(any Error)?>(nil)
      let t = TensorData.build(dtype: dtype, shape: shape) { out in
        nonisolated(unsafe) let o = out
        do {
          try stream { at, bytes in
            guard at >= 0, bytes.count <= n - at else {
              throw StorageError(file: "", offset: at, message: "streamed bytes outside the tensor")
            }
            // safe: bytes in range, so n > 0 and the buffer has a base address.
            if let src = bytes.baseAddress {
              (o.baseAddress! + at).copyMemory(from: src, byteCount: bytes.count)
            }
          }
        } catch { collected.withLock { $0 = error } }
      }
      if let e = collected.withLock({ $0 }) { throw e }
      return t
    }
    self.stream = stream
  }

  public init(name: String, data: TensorData) {
    self.init(name: name, dtype: data.dtype, shape: data.shape) { data }
  }

  var byteCount: Int { shape.reduce(1, *) * dtype.byteSize }
}

/// Writes safetensors files laid out as the reference writer does: compact JSON header with
/// `__metadata__` first, tensors ordered by alignment (largest element first) then name,
/// header padded with spaces to a multiple of 8.
public enum SafetensorsWriter {
  /// The header bytes (with padding) and the entries in data order.
  public static func layout(_ entries: [SafetensorsEntry], metadata: [(String, String)] = [])
    -> (header: [UInt8], ordered: [SafetensorsEntry])
  {
    let ordered = entries.sorted {
      $0.dtype.byteSize != $1.dtype.byteSize ? $0.dtype.byteSize > $1.dtype.byteSize : $0.name < $1.name
    }
    var json = "{"
    var first = true
    if !metadata.isEmpty {
      json += "\"__metadata__\":{" + metadata.map { JSON.quote($0.0) + ":" + JSON.quote($0.1) }.joined(separator: ",") + "}"
      first = false
    }
    var offset = 0
    for e in ordered {
      if !first { json += "," }
      first = false
      let end = offset + e.byteCount
      json += JSON.quote(e.name) + ":{\"dtype\":\"\(e.dtype.safetensorsName)\",\"shape\":["
        + e.shape.map(String.init).joined(separator: ",") + "],\"data_offsets\":[\(offset),\(end)]}"
      offset = end
    }
    json += "}"
    var header = Array(json.utf8)
    while header.count % 8 != 0 { header.append(0x20) }
    return (header, ordered)
  }

  /// Writes `entries` to `path` atomically (temporary name, then rename).
  public static func write(_ entries: [SafetensorsEntry], metadata: [(String, String)] = [], to path: String) throws {
    let out = try AtomicFileWriter(path: path)
    try write(entries, metadata: metadata, into: out)
    try out.commit()
  }

  /// Streams `entries` into an open writer, producing each tensor only when it is written.
  public static func write(_ entries: [SafetensorsEntry], metadata: [(String, String)] = [], into out: AtomicFileWriter) throws {
    let (header, ordered) = layout(entries, metadata: metadata)
    let dataBytes = ordered.reduce(0) { $0 + $1.byteCount }
    Progress.shared.expect(bytes: dataBytes)
    out.reserve(out.bytesWritten + 8 + header.count + dataBytes)
    var n = UInt64(header.count).littleEndian
    try withUnsafeBytes(of: &n) { b throws(StorageError) in try out.write(b) }
    try out.write(header)
    // Tensors are produced (packed, converted) on other threads ahead of the writer — as many
    // as fit in `aheadBytes` — while each is written by several threads at once (positional
    // writes): on two cores the packing and the kernel's copies into the page cache overlap,
    // and hundreds of small tensors do not each wait for a hand-off.
    try out.flush()
    var position = out.bytesWritten
    var pending: [ProducedTensor] = []
    var next = 0, inFlight = 0
    defer { for p in pending { p.wait() } }
    func refill() {
      while next < ordered.count && (pending.isEmpty || inFlight + ordered[next].byteCount <= aheadBytes) {
        // A streamed entry is made as it is written, on the writer's turn.
        let e = ordered[next]
        pending.append(e.stream == nil ? ProducedTensor.start(e) : ProducedTensor.streamed)
        inFlight += ordered[next].byteCount
        next += 1
      }
    }
    for e in ordered {
      refill()
      let current = pending.removeFirst()
      current.wait()
      inFlight -= e.byteCount
      if let stream = e.stream {
        try writeStreamed(e, stream, at: position, into: out)
        position += e.byteCount
        Progress.shared.advance(bytes: e.byteCount)
        continue
      }
      let t = try current.result.get()
      guard t.dtype == e.dtype, t.shape.reduce(1, *) == e.shape.reduce(1, *) else {
        throw StorageError(file: out.path, offset: nil, message: "tensor '\(e.name)' produced \(t.dtype) \(t.shape), declared \(e.dtype) \(e.shape)")
      }
      try writeParallel(t, at: position, into: out)
      position += t.byteCount
      Progress.shared.advance(bytes: t.byteCount)
    }
    try out.moveSequentialPosition(to: position)
  }

  /// Bytes of tensors produced ahead of the one being written.
  static let aheadBytes = 64 << 20

  /// Threads that write one tensor's bytes.
  nonisolated(unsafe) static var writeThreads = max(1, min(4, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))

  /// Writes a tensor's bytes at file offset `at`, in chunks shared among `writeThreads`. A
  /// tensor decoded on first use (a GGUF import) is decoded a chunk of rows at a time into
  /// each thread's buffer, so the whole f32 tensor is never held (the tied embedding alone is
  /// 113 MB for a 135M model); a memory-mapped one is copied a chunk at a time and each
  /// chunk's pages released once written.
  static func writeParallel(_ t: TensorData, at base: Int, into out: AtomicFileWriter) throws(StorageError) {
    let total = t.byteCount
    guard total > 0 else { return }
    let failure = Mutex<StorageError?>(nil)
    nonisolated(unsafe) let file = out
    if t.decodesRows, t.dtype == .f32, let cols = t.shape.last, cols > 0 {
      let rows = t.count / cols
      let chunkRows = max(1, (1 << 20) / (cols * 4))
      let chunks = (rows + chunkRows - 1) / chunkRows
      let workers = min(writeThreads, chunks)
      DispatchQueue.concurrentPerform(iterations: workers) { w in
        var buf = [Float](repeating: 0, count: min(chunkRows, rows) * cols)
        buf.withUnsafeMutableBufferPointer { b in
          var c = w
          while c < chunks, failure.withLock({ $0 == nil }) {
            let r = c * chunkRows, n = min(chunkRows, rows - r)
            _ = t.decodeRows(r..<(r + n), into: b.baseAddress!)  // safe: rows > 0
            do throws(StorageError) { try file.write(UnsafeRawBufferPointer(start: b.baseAddress, count: n * cols * 4), at: base + r * cols * 4) } catch {
              failure.withLock { if $0 == nil { $0 = error } }
            }
            c += workers
          }
        }
      }
    } else {
      let chunk = 4 << 20
      let chunks = (total + chunk - 1) / chunk
      let workers = min(writeThreads, chunks)
      // Bytes made on first use for this write (4-bit codes held as nibbles, say) are dropped
      // again once written, so saving a module does not hold both forms of every tensor.
      let madeForThisWrite = t.isDeferred
      defer { if madeForThisWrite { t.releasePages() } }
      t.withUnsafeBytes { raw in
        nonisolated(unsafe) let src = raw
        DispatchQueue.concurrentPerform(iterations: workers) { w in
          var c = w
          while c < chunks, failure.withLock({ $0 == nil }) {
            let lo = c * chunk, hi = min(total, lo + chunk)
            do throws(StorageError) { try file.write(UnsafeRawBufferPointer(rebasing: src[lo..<hi]), at: base + lo) } catch {
              failure.withLock { if $0 == nil { $0 = error } }
            }
            // A mapped source's pages are read once: drop them so they do not add up in RSS.
            t.releasePages(lo..<hi)
            c += workers
          }
        }
      }
    }
    if let e = failure.withLock({ $0 }) { throw e }
  }

  /// Writes a streamed entry's chunks at their places after `base`, checking that they stay
  /// inside the tensor and fill it exactly.
  static func writeStreamed(
    _ e: SafetensorsEntry, _ stream: @Sendable (SafetensorsEntry.Sink) throws -> Void, at base: Int,
    into out: AtomicFileWriter
  ) throws {
    let total = e.byteCount
    let written = Atomic<Int>(0)
    nonisolated(unsafe) let file = out
    let path = out.path, name = e.name
    try stream { at, bytes in
      guard at >= 0, bytes.count <= total - at else {
        throw StorageError(
          file: path, offset: base + at,
          message:
            "tensor '\(name)': bytes [\(at), \(at + bytes.count)) written outside its \(total)")
      }
      guard bytes.count > 0 else { return }
      try file.write(bytes, at: base + at)
      written.add(bytes.count, ordering: .relaxed)
    }
    guard written.load(ordering: .relaxed) == total else {
      let got = written.load(ordering: .relaxed)
      throw StorageError(
        file: path, offset: base,
        message: "tensor '\(name)': \(got) bytes streamed, declared \(total)")
    }
  }

  /// One entry's `produce()` running on a global queue; `wait()` before reading `result`.
  final class ProducedTensor: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var waited = false

    /// The placeholder of a streamed entry: nothing runs ahead, nothing to wait for.
    static var streamed: ProducedTensor {
      let p = ProducedTensor()
      p.waited = true
      return p
    }
    var result: Result<TensorData, any Error> = .failure(StorageError(file: "", offset: nil, message: "not produced"))

    static func start(_ e: SafetensorsEntry) -> ProducedTensor {
      let p = ProducedTensor()
      nonisolated(unsafe) let produce = e.produce
      DispatchQueue.global().async {
        p.result = Result { try produce() }
        p.done.signal()
      }
      return p
    }

    func wait() {
      guard !waited else { return }
      done.wait()
      waited = true
    }
  }

}
