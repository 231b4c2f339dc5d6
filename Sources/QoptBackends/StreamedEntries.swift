import Dispatch
import QoptFormats
import QoptIR
import Synchronization

/// Tensors made as they are written: rows packed or converted a chunk at a time into each
/// writing thread's buffer and handed to the file (`SafetensorsEntry.stream`).
///
/// Why: made whole, every packed or converted tensor is a fresh allocation whose pages the
/// kernel zeroes and maps one fault at a time — on the shared 135M model's W4A16 emit that was
/// most of the process's system time, more than the packing. Chunked, each thread reuses one
/// buffer that stays in cache between filling it and the write's copy.
package enum StreamedEntries {
  /// Output bytes one thread makes before handing them to the sink.
  static let chunkBytes = 256 << 10

  /// Threads that make one tensor's chunks.
  static var threads: Int { PackToInt32.packThreads }

  /// Calls `fill(rows, out, scratch)` for consecutive row ranges of about `chunkBytes` of output
  /// (`rowBytes` each) on up to `threads` threads, then `sink(offset, bytes)` with each range's
  /// output. `scratch` is the thread's own `scratchFloats` floats.
  static func inChunks(
    rows: Int, rowBytes: Int, scratchFloatsPerRow: Int = 0, sink: SafetensorsEntry.Sink,
    fill: @Sendable (Range<Int>, UnsafeMutableRawPointer, UnsafeMutablePointer<Float>) -> Void
  ) throws {
    guard rows > 0, rowBytes > 0 else { return }
    let chunkRows = max(1, chunkBytes / rowBytes)
    let chunks = (rows + chunkRows - 1) / chunkRows
    let workers = max(1, min(threads, chunks))
    let failure = Mutex<(any Error)?>(nil)
    DispatchQueue.concurrentPerform(iterations: workers) { w in
      let n = min(chunkRows, rows)
      let out = UnsafeMutableRawPointer.allocate(byteCount: n * rowBytes, alignment: 64)
      let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(1, n * scratchFloatsPerRow))
      defer {
        out.deallocate()
        scratch.deallocate()
      }
      var c = w
      while c < chunks, failure.withLock({ $0 == nil }) {
        let r = c * chunkRows, m = min(chunkRows, rows - r)
        fill(r..<(r + m), out, scratch)
        do {
          try sink(r * rowBytes, UnsafeRawBufferPointer(start: out, count: m * rowBytes))
        } catch {
          failure.withLock { if $0 == nil { $0 = error } }
        }
        c += workers
      }
    }
    if let e = failure.withLock({ $0 }) { throw e }
  }

  /// `codes` (i8 `[rows, columns]`) as compressed-tensors' packed int32 words, packed as written.
  package static func packedInt32(_ name: String, codes: TensorData, bits: Int) -> SafetensorsEntry
  {
    let (rows, cols) = (codes.shape[0], codes.shape[1])
    let wpr = PackToInt32.wordsPerRow(columns: cols, bits: bits)
    if bits == 4, cols % 8 == 0, let nibbles = codes.int4Nibbles {
      // Codes held two to a byte are these words already (little-endian): written as they are.
      return SafetensorsEntry(name: name, dtype: .i32, shape: [rows, wpr]) { sink in
        try nibbles.withUnsafeBytes { src in
          var at = 0
          while at < src.count {
            let n = min(chunkBytes, src.count - at)
            try sink(at, UnsafeRawBufferPointer(rebasing: src[at..<(at + n)]))
            at += n
          }
        }
      }
    }
    return SafetensorsEntry(name: name, dtype: .i32, shape: [rows, wpr]) { sink in
      defer { codes.releasePages() }
      try codes.withUnsafeBytes { src in
        nonisolated(unsafe) let s = src
        try inChunks(rows: rows, rowBytes: wpr * 4, sink: sink) { range, out, _ in
          PackToInt32.packRows(
            UnsafeRawBufferPointer(
              rebasing: s[(range.lowerBound * cols)..<(range.upperBound * cols)]),
            rows: range.count, columns: cols, bits: bits,
            into: out.bindMemory(to: UInt32.self, capacity: range.count * wpr))
        }
      }
    }
  }

  /// `codes` (`[rows, columns]` bytes, a 4-bit code in each low nibble) two to a byte, element
  /// 2k in the low nibble of byte k (compressed-tensors' NVFP4 `weight_packed`), packed as written.
  package static func packedNibbles(_ name: String, codes: TensorData) -> SafetensorsEntry {
    let (rows, cols) = (codes.shape[0], codes.shape[1])
    return SafetensorsEntry(name: name, dtype: .u8, shape: [rows, cols / 2]) { sink in
      defer { codes.releasePages() }
      try codes.withUnsafeBytes { src in
        nonisolated(unsafe) let s = src
        try inChunks(rows: rows, rowBytes: cols / 2, sink: sink) { range, out, _ in
          let dst = out.assumingMemoryBound(to: UInt8.self)
          let first = range.lowerBound * cols
          for k in 0..<(range.count * cols / 2) {
            dst[k] = (s[first + 2 * k] & 0xF) | ((s[first + 2 * k + 1] & 0xF) << 4)
          }
        }
      }
    }
  }

  /// A float tensor rounded to `dtype` (f32, f16, bf16) as it is written: rows decoded a chunk
  /// at a time when the tensor decodes rows (a GGUF import), else read from its f32 values.
  package static func converted(
    _ name: String, _ t: TensorData, to dtype: DType
  ) -> SafetensorsEntry {
    let cols = max(1, t.shape.last ?? 1)
    let rows = t.count / cols
    let size = dtype.byteSize
    return SafetensorsEntry(name: name, dtype: dtype, shape: t.shape) { sink in
      defer { t.releasePages() }
      if t.decodesRows {
        try inChunks(rows: rows, rowBytes: cols * size, scratchFloatsPerRow: cols, sink: sink) {
          range, out, buf in
          if !t.decodeRows(range, into: buf) {
            // Decoded whole meanwhile (another reader): take the rows from those bytes.
            t.withF32 {
              buf.update(from: $0.baseAddress! + range.lowerBound * cols, count: range.count * cols)
            }  // safe: rows > 0
          }
          storeRounded(buf, count: range.count * cols, as: dtype, into: out)
        }
      } else {
        let result: Result<Void, any Error> = t.withF32 { v in
          guard let base = v.baseAddress else { return .success(()) }
          nonisolated(unsafe) let src = base
          return Result {
            try inChunks(rows: rows, rowBytes: cols * size, sink: sink) { range, out, _ in
              storeRounded(
                src + range.lowerBound * cols, count: range.count * cols, as: dtype, into: out)
            }
          }
        }
        try result.get()
      }
    }
  }
}
