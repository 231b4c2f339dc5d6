import QoptFormats
import QoptIR
import QoptSupport
import Synchronization

/// One tensor of a GGUF file to be written: its name, row-major shape (written reversed, in
/// ggml order), type, and a closure that streams its encoded bytes when the writer reaches it.
package struct GGUFTensorEntry {
  /// Receives `bytes` for byte offset `at` of the tensor. Callable from several threads at
  /// once for disjoint ranges: encoders write each finished chunk straight to the file.
  package typealias Sink = @Sendable (_ at: Int, _ bytes: UnsafeRawBufferPointer) throws -> Void

  package var name: String
  package var shape: [Int]
  package var type: GGMLType
  /// Streams the bytes using up to `threads` threads of its own.
  package var stream: (_ threads: Int, Sink) throws -> Void

  package init(
    name: String, shape: [Int], type: GGMLType,
    stream: @escaping (_ threads: Int, Sink) throws -> Void
  ) {
    self.name = name
    self.shape = shape
    self.type = type
    self.stream = stream
  }

  /// A tensor whose bytes are produced whole.
  package init(name: String, shape: [Int], type: GGMLType, produce: @escaping () throws -> [UInt8]) {
    self.init(name: name, shape: shape, type: type) { _, sink in
      let bytes = try produce()
      try bytes.withUnsafeBytes { try sink(0, $0) }
    }
  }

  var byteCount: Int { type.byteCount(elements: shape.reduce(1, *)) }
}

/// Writes GGUF version 3 (reference/gguf.md §1): header, metadata, tensor infos with offsets
/// relative to the aligned data section, and tensor data padded to `alignment`. Every offset
/// is known once the header is built, so tensor bytes go to their place in the file as the
/// encoders finish them (positional writes from each encoding thread, no whole-tensor buffer);
/// the file appears under its name only when complete (`AtomicFileWriter`).
package enum GGUFFileWriter {
  static let alignment = 32

  /// Tensors of at least this many elements are streamed one at a time with every thread;
  /// smaller ones go to the threads whole (`ItemThreads`). Where a tensor's bytes come from does
  /// not depend on the thread that encodes them, so the file is the same.
  static let wholeTensorElements = 1 << 22

  package static func write(
    metadata: [(String, GGUFValue)], raw: RawMetadata? = nil, tensors: [GGUFTensorEntry],
    threads: Int = 1, to path: String
  ) throws {
    let out = try AtomicFileWriter(path: path)
    var head: [UInt8] = []
    func le<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { head.append(contentsOf: $0) } }
    head += Array("GGUF".utf8)
    le(UInt32(3))
    le(UInt64(tensors.count))
    le(UInt64(metadata.count + (raw?.keys.count ?? 0)))
    for (k, v) in metadata {
      GGUFValue.string(k).encode(into: &head)
      le(v.typeID)
      v.encode(into: &head)
    }
    if let raw { head += raw.bytes }
    var offset = 0
    for t in tensors {
      GGUFValue.string(t.name).encode(into: &head)
      le(UInt32(t.shape.count))
      for d in t.shape.reversed() { le(UInt64(d)) }
      le(t.type.rawValue)
      le(UInt64(offset))
      offset += padded(t.byteCount)
    }
    head += [UInt8](repeating: 0, count: padded(head.count) - head.count)
    try out.write(head)
    try out.flush()
    nonisolated(unsafe) let file = out
    var starts: [Int] = []
    var base = head.count
    for t in tensors {
      starts.append(base)
      base += padded(t.byteCount)
    }
    Progress.shared.expect(bytes: tensors.reduce(0) { $0 + $1.byteCount })
    /// Streams tensor `i` with `threads` threads and checks it filled its bytes exactly.
    func streamOne(_ i: Int, threads: Int) throws {
      let t = tensors[i]
      let written = Atomic<Int>(0)
      let start = starts[i], count = t.byteCount, name = t.name
      try t.stream(threads) { at, bytes in
        guard at >= 0, bytes.count <= count - at else {
          throw BackendError(
            output: path, tensor: name,
            "encoder wrote bytes [\(at), \(at + bytes.count)) outside the tensor's \(count)")
        }
        try file.write(bytes, at: start + at)
        written.add(bytes.count, ordering: .relaxed)
      }
      guard written.load(ordering: .relaxed) == count else {
        let n = written.load(ordering: .relaxed)
        throw BackendError(
          output: path, tensor: t.name, "encoder produced \(n) bytes, expected \(count)")
      }
      Progress.shared.advance(bytes: count)
    }
    try ItemThreads.run(
      count: tensors.count, threads: threads,
      isLarge: { tensors[$0].shape.reduce(1, *) >= wholeTensorElements }
    ) { i, t in try streamOne(i, threads: t) }
    try out.setLength(base)  // the last tensor's padding
    try out.commit()
  }

  static func padded(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }
}
