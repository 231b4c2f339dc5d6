import CQoptCodecs
import Synchronization

/// f32 bytes made on first use by a decoder — a GGUF block-quantized tensor, say — and kept
/// until `releasePages()`.
///
/// Why: an importer that decodes every tensor up front holds the whole model in f32 before
/// anything runs, and faults in hundreds of MB of fresh pages. Deferred, a streaming emitter
/// decodes one row at a time straight into its encoder (`decodeRows`), and the runtime pays
/// the decode once per tensor when it first reads it.
final class DeferredBytes: @unchecked Sendable {
  let byteCount: Int
  /// Writes all the bytes.
  let fill: @Sendable (UnsafeMutableRawBufferPointer) -> Void
  /// Writes f32 rows `range` (of `rowLength` floats each) to the pointer, when the decoder can
  /// produce rows independently.
  let rows: (@Sendable (Range<Int>, UnsafeMutablePointer<Float>) -> Void)?
  /// The stored tensor the bytes are decoded from, when it is a plain f16/bf16 one
  /// (`TensorData(f32Decoding:)`): a writer that wants that dtype back copies it instead.
  let source: TensorData?
  /// Drops whatever the decoder reads from (a mapped file's pages, say), when that is not a
  /// `source` tensor: called by `releasePages()`.
  let releaseInput: (@Sendable () -> Void)?
  /// The nibbles i8 codes are unpacked from (`TensorData(int4Nibbles:shape:)`), if any.
  let nibbles: TensorData?
  private let cache = Mutex<OwnedBytes?>(nil)

  init(
    byteCount: Int, fill: @escaping @Sendable (UnsafeMutableRawBufferPointer) -> Void,
    rows: (@Sendable (Range<Int>, UnsafeMutablePointer<Float>) -> Void)?, source: TensorData? = nil,
    releaseInput: (@Sendable () -> Void)? = nil, nibbles: TensorData? = nil
  ) {
    self.byteCount = byteCount
    self.fill = fill
    self.rows = rows
    self.source = source
    self.releaseInput = releaseInput
    self.nibbles = nibbles
  }

  /// The decoded bytes, decoding them now if nothing holds them.
  func bytes() -> OwnedBytes {
    cache.withLock { c in
      if let c { return c }
      let made = OwnedBytes(count: byteCount, fill: fill)
      c = made
      return made
    }
  }

  var isDecoded: Bool { cache.withLock { $0 != nil } }

  /// Forgets the decoded bytes (readers holding them keep their copy alive).
  func release() { cache.withLock { $0 = nil } }
}

extension TensorData {
  /// An f32 tensor whose bytes `fill` produces on first use; `rows`, when given, decodes a
  /// range of rows (the last dimension is the row) on its own, for streaming readers.
  /// `releaseInput`, when given, drops what the decoders read (a GGUF tensor's mapped pages),
  /// called by `releasePages()`: a streaming reader that decoded every row of every tensor
  /// would otherwise keep the whole mapped file resident (7.3 GiB for an 8B Q8_0 GGUF).
  public init(
    deferredF32 shape: [Int], fill: @escaping @Sendable (UnsafeMutableRawBufferPointer) -> Void,
    rows: (@Sendable (Range<Int>, UnsafeMutablePointer<Float>) -> Void)? = nil,
    releaseInput: (@Sendable () -> Void)? = nil
  ) {
    let n = shape.reduce(1, *) * 4
    self.init(
      dtype: .f32, shape: shape,
      storage: .deferred(
        DeferredBytes(byteCount: n, fill: fill, rows: rows, releaseInput: releaseInput)),
      byteCount: n)
  }

  /// A tensor of `dtype` whose bytes `fill` writes on first use and which `releasePages()`
  /// forgets again: the unpacked codes of a packed checkpoint weight, say, made one tensor at a
  /// time by the writer that reads them instead of all at import (7 GB of i8 codes for an 8B
  /// model).
  public init(
    deferred dtype: DType, shape: [Int],
    fill: @escaping @Sendable (UnsafeMutableRawBufferPointer) -> Void
  ) {
    let n = shape.reduce(1, *) * dtype.byteSize
    self.init(
      dtype: dtype, shape: shape,
      storage: .deferred(DeferredBytes(byteCount: n, fill: fill, rows: nil)), byteCount: n)
  }

  /// The f32 values of an f16 or bf16 tensor, converted on first use (or row by row by a
  /// streaming reader) instead of up front.
  ///
  /// Why: a bf16 checkpoint converted eagerly is held twice over in f32 — 32 GB for an 8B
  /// model — before any pass runs. Deferred, `rtn` and the backends convert a chunk of rows
  /// at a time, and a full conversion (a forward pass reading the weight) is dropped again by
  /// `releasePages()`, together with the source's mapped pages.
  public init(f32Decoding source: TensorData) {
    precondition(source.dtype == .f16 || source.dtype == .bf16, "f32Decoding of \(source.dtype)")
    let n = source.count * 4
    let cols = max(source.shape.last ?? 1, 1)
    let half = source.dtype == .f16
    self.init(
      dtype: .f32, shape: source.shape,
      storage: .deferred(
        DeferredBytes(
          byteCount: n,
          fill: { raw in
            source.readFloats(into: raw.bindMemory(to: Float.self))
            source.releasePages()
          },
          rows: { range, dst in
            source.withUnsafeBytes { raw in
              let lo = range.lowerBound * cols
              for i in 0..<(range.count * cols) {
                let bits = raw.loadUnaligned(fromByteOffset: 2 * (lo + i), as: UInt16.self)
                dst[i] = half ? f16ToFloat(bits) : bf16ToFloat(bits)
              }
            }
          }, source: source)), byteCount: n)
  }

  /// i8 codes in [−8, 7] held two to a byte and unpacked on first use (and again after
  /// `releasePages()`): `packed` is u8 `[rows, columns / 2]`, code 2k of a row in the low nibble
  /// of byte k, each stored plus 8 — byte for byte compressed-tensors' int4 words when a row's
  /// codes fill whole words.
  ///
  /// Why: `rtn` to 4 bits wrote every weight's codes a byte each (106 MB for the shared 135M
  /// model), pages the kernel maps and zeroes, the emitter reads once to pack into the same
  /// nibbles, and the kernel frees at exit — a fifth of the W4A16 command's CPU. Held as
  /// nibbles, the compressed-tensors writer streams them as they are (`int4Nibbles`), and any
  /// other reader gets the i8 codes it always got.
  public init(int4Nibbles packed: TensorData, shape: [Int]) {
    precondition(packed.dtype == .u8 && shape.count == 2 && shape[1] % 2 == 0, "int4 nibbles")
    precondition(packed.shape == [shape[0], shape[1] / 2], "int4 nibbles shape")
    let n = shape[0] * shape[1]
    self.init(
      dtype: .i8, shape: shape,
      storage: .deferred(
        DeferredBytes(
          byteCount: n,
          fill: { raw in
            packed.withUnsafeBytes { src in
              guard let s = src.baseAddress, let d = raw.baseAddress else { return }
              let (from, to) = (s.assumingMemoryBound(to: UInt8.self), d.assumingMemoryBound(to: Int8.self))
              qopt_unpack_int4(from, n, to, 0)
            }
          }, rows: nil, nibbles: packed)), byteCount: n)
  }

  /// The nibbles of i8 codes made by `init(int4Nibbles:shape:)`, if these are such codes.
  public var int4Nibbles: TensorData? {
    if case .deferred(let d) = storage { return d.nibbles }
    return nil
  }

  /// The f16/bf16 tensor this f32 one is converted from on use (`init(f32Decoding:)`), if any.
  public var conversionSource: TensorData? {
    if case .deferred(let d) = storage { return d.source }
    return nil
  }

  /// Whether the bytes are made on first use (and not made yet).
  public var isDeferred: Bool {
    if case .deferred(let d) = storage { return !d.isDecoded }
    return false
  }

  /// Whether `decodeRows` works now: deferred, not yet decoded, with a row decoder.
  public var decodesRows: Bool {
    guard case .deferred(let d) = storage else { return false }
    return d.rows != nil && !d.isDecoded
  }

  /// Writes f32 rows `range` into `dst` without materializing the tensor, when its bytes are
  /// deferred, not yet decoded, and the decoder works row by row; returns false otherwise (then
  /// read the bytes as usual).
  public func decodeRows(_ range: Range<Int>, into dst: UnsafeMutablePointer<Float>) -> Bool {
    guard case .deferred(let d) = storage, let rows = d.rows, !d.isDecoded else { return false }
    rows(range, dst)
    return true
  }
}
