#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The bytes of one dense tensor: owned in memory, or a slice of a memory-mapped file.
///
/// Values are little-endian and row-major. Reading a mapped tensor touches only its own pages.
public struct TensorData: @unchecked Sendable {
  enum Storage {
    case owned(OwnedBytes)
    case mapped(MappedFile, offset: Int)
    case deferred(DeferredBytes)
  }

  public let dtype: DType
  public let shape: [Int]
  public let byteCount: Int
  let storage: Storage

  /// Element count (product of the shape; 1 for a scalar).
  public var count: Int { shape.reduce(1, *) }

  /// Wraps `bytes`; `bytes.count` must equal the shape's element count times the dtype size.
  public init(dtype: DType, shape: [Int], bytes: [UInt8]) {
    precondition(bytes.count == shape.reduce(1, *) * dtype.byteSize, "tensor byte count")
    self.dtype = dtype
    self.shape = shape
    self.byteCount = bytes.count
    self.storage = .owned(OwnedBytes(bytes))
  }

  /// A tensor whose bytes live in `file` at `offset` (already range-checked by the reader).
  public init(dtype: DType, shape: [Int], file: MappedFile, offset: Int, byteCount: Int) {
    self.dtype = dtype
    self.shape = shape
    self.byteCount = byteCount
    self.storage = .mapped(file, offset: offset)
  }

  /// An f32 tensor holding `values`.
  public init(floats values: [Float], shape: [Int]) {
    precondition(values.count == shape.reduce(1, *), "tensor element count")
    self.dtype = .f32
    self.shape = shape
    self.byteCount = values.count * 4
    self.storage = .owned(OwnedBytes(values.withUnsafeBytes { Array($0) }))
  }

  /// `values` rounded into `dtype` (f32, f16 or bf16).
  public init(floats values: [Float], shape: [Int], as dtype: DType) {
    switch dtype {
    case .f16, .bf16:
      precondition(values.count == shape.reduce(1, *), "tensor element count")
      // Rounded straight into the tensor's own buffer: no intermediate arrays to fault in.
      self = values.withUnsafeBufferPointer { v in
        TensorData.build(dtype: dtype, shape: shape) { out in
          guard let src = v.baseAddress, let dst = out.baseAddress else { return }
          storeRounded(src, count: v.count, as: dtype, into: dst)
        }
      }
    default:
      precondition(dtype == .f32, "float conversion to \(dtype)")
      self.init(floats: values, shape: shape)
    }
  }

  /// An i8 tensor holding `values`.
  public init(int8 values: [Int8], shape: [Int]) {
    self.init(dtype: .i8, shape: shape, bytes: values.withUnsafeBytes { Array($0) })
  }

  /// Calls `body` with the raw bytes.
  public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
    switch storage {
    case .owned(let o): return try body(UnsafeRawBufferPointer(start: o.pointer, count: byteCount))
    case .mapped(let f, let offset): return try body(f.bytes(offset: offset, count: byteCount))
    case .deferred(let d):
      let o = d.bytes()
      return try withExtendedLifetime(o) { () throws(E) -> R in try body(UnsafeRawBufferPointer(start: o.pointer, count: byteCount)) }
    }
  }

  /// The raw bytes as an array (a copy).
  public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

  /// Every element converted to f32 (exactly, for float and small integer types).
  ///
  /// A deferred tensor that decodes by rows is decoded straight into the result, without
  /// keeping a decoded copy: a runtime reading an 8B model's weights block by block would
  /// otherwise hold each block twice, and every block it has read.
  public func floats() -> [Float] {
    let n = count
    // Uninitialized: every element is written below (zero-filling first doubled the cost).
    return [Float](unsafeUninitializedCapacity: n) { dst, initialized in
      initialized = n
      if let cols = shape.last, cols > 0, let base = dst.baseAddress,
        decodeRows(0..<(n / cols), into: base)
      {
        return
      }
      readFloats(into: dst)
    }
  }

  /// Converts every element to f32 into `dst` (which holds `count` floats).
  public func readFloats(into dst: UnsafeMutableBufferPointer<Float>) {
    let n = count
    withUnsafeBytes { raw in
      switch dtype {
      case .f32:
        UnsafeMutableRawBufferPointer(dst).copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[0..<(n * 4)]))
      case .f16:
        for i in 0..<n { dst[i] = f16ToFloat(raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
      case .bf16:
        for i in 0..<n { dst[i] = bf16ToFloat(raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
      case .i8:
        for i in 0..<n { dst[i] = Float(Int8(bitPattern: raw[i])) }
      case .u8:
        for i in 0..<n { dst[i] = Float(raw[i]) }
      case .i32:
        for i in 0..<n { dst[i] = Float(raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
      case .i64:
        for i in 0..<n { dst[i] = Float(raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
      case .f8e4m3:
        for i in 0..<n { dst[i] = e4m3ToFloat(raw[i]) }
      }
    }
  }

  /// Calls `body` with the elements as f32: in place for an aligned f32 tensor (no copy, so a
  /// memory-mapped weight is only paged in), converted into a temporary buffer otherwise.
  public func withF32<R>(_ body: (UnsafeBufferPointer<Float>) -> R) -> R {
    if dtype == .f32 {
      let direct: R? = withUnsafeBytes { raw in
        guard let base = raw.baseAddress, Int(bitPattern: base) % 4 == 0 else { return nil }
        return body(UnsafeBufferPointer(start: base.assumingMemoryBound(to: Float.self), count: count))
      }
      if let direct { return direct }
    }
    return floats().withUnsafeBufferPointer(body)
  }

  /// The elements of an i8 tensor.
  public func int8s() -> [Int8] {
    precondition(dtype == .i8 || dtype == .u8, "int8s() on \(dtype)")
    return withUnsafeBytes { raw in raw.map { Int8(bitPattern: $0) } }
  }

  /// The same bytes viewed with another shape of the same element count.
  public func reshaped(_ newShape: [Int]) -> TensorData {
    precondition(newShape.reduce(1, *) == count, "reshape element count")
    var t = self
    t = TensorData(dtype: dtype, shape: newShape, storage: storage, byteCount: byteCount)
    return t
  }

  init(dtype: DType, shape: [Int], storage: Storage, byteCount: Int) {
    self.dtype = dtype
    self.shape = shape
    self.storage = storage
    self.byteCount = byteCount
  }

  /// Whether the two tensors have the same dtype, shape and bytes.
  public func isIdentical(to other: TensorData) -> Bool {
    guard dtype == other.dtype, shape == other.shape, byteCount == other.byteCount else { return false }
    return withUnsafeBytes { a in other.withUnsafeBytes { b in a.elementsEqual(b) } }
  }
}

/// Heap bytes owned by one or more `TensorData` values (immutable once built).
///
/// Buffers of 4 MiB and more are their own anonymous mapping, 2 MiB aligned and marked for
/// transparent huge pages: decoding a checkpoint writes hundreds of MB of fresh memory, and
/// with 4 KiB pages the page faults alone cost more than the decoding. Buffers from 64 KiB up to
/// that are a mapping populated in one system call (the quantized codes of one weight, say: on
/// the shared 135M model's rtn, 26 thousand page faults became a few hundred system calls).
final class OwnedBytes: @unchecked Sendable {
  let pointer: UnsafeMutableRawPointer
  let count: Int
  /// The mapping to unmap (start, length), or nil when `pointer` came from the allocator.
  private let mapping: (UnsafeMutableRawPointer, Int)?

  init(_ bytes: [UInt8]) {
    count = bytes.count
    (pointer, mapping) = Self.allocate(count)
    bytes.withUnsafeBytes { pointer.copyMemory(from: $0.baseAddress ?? UnsafeRawPointer(pointer), byteCount: count) }
  }
  /// Takes `count` bytes written by `fill` directly, avoiding an intermediate array.
  init(count: Int, fill: (UnsafeMutableRawBufferPointer) -> Void) {
    self.count = count
    (pointer, mapping) = Self.allocate(count)
    fill(UnsafeMutableRawBufferPointer(start: pointer, count: count))
  }
  /// `count` bytes whose pages are left unmapped: the threads that write them map their own
  /// parts (`populateForWriting`).
  init(unpopulated count: Int) {
    self.count = count
    (pointer, mapping) = Self.allocate(count, populate: false)
  }

  /// Maps the pages under bytes `range` for writing, on the calling thread, in one system call
  /// (MADV_POPULATE_WRITE; a kernel without it leaves them to fault one by one). Only for
  /// mapped allocations: pages of the allocator's heap are already there.
  func populateForWriting(_ range: Range<Int>) {
    guard mapping != nil, !range.isEmpty else { return }
    let start = (Int(bitPattern: pointer) + range.lowerBound) / 4096 * 4096
    let end = Int(bitPattern: pointer) + range.upperBound
    guard let p = UnsafeMutableRawPointer(bitPattern: start) else { return }
    // MADV_POPULATE_WRITE (Linux 5.14), not in every libc's headers.
    _ = madvise(p, end - start, 23)
  }
  deinit {
    if let (start, length) = mapping { munmap(start, length) } else { pointer.deallocate() }
  }

  static let hugePage = 2 << 20

  private static func allocate(
    _ count: Int, populate: Bool = true
  ) -> (UnsafeMutableRawPointer, (UnsafeMutableRawPointer, Int)?) {
    if count >= 4 << 20 {
      let length = (count + hugePage - 1) / hugePage * hugePage + hugePage
      if let raw = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), raw != MAP_FAILED {
        let aligned = UnsafeMutableRawPointer(bitPattern: (Int(bitPattern: raw) + hugePage - 1) / hugePage * hugePage)!  // safe: non-null
        _ = madvise(aligned, length - hugePage, MADV_HUGEPAGE)
        return (aligned, (raw, length))
      }
    }
    if count >= populateBytes {
      // Below huge-page size but above malloc's small sizes: malloc maps these fresh each time
      // and the writer then faults them in a 4 KiB page at a time; one populated mapping is
      // one system call.
      let length = (count + 4095) / 4096 * 4096
      let flags = MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0)
      if let raw = mmap(nil, length, PROT_READ | PROT_WRITE, flags, -1, 0), raw != MAP_FAILED {
        return (raw, (raw, length))
      }
    }
    return (UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64), nil)
  }

  static let populateBytes = 64 << 10
}

extension TensorData {
  /// A tensor of `dtype`/`shape` whose bytes `fill` writes in place (no intermediate copy).
  public static func build(
    dtype: DType, shape: [Int], fill: (UnsafeMutableRawBufferPointer) -> Void
  ) -> TensorData {
    let n = shape.reduce(1, *) * dtype.byteSize
    return TensorData(dtype: dtype, shape: shape, storage: .owned(OwnedBytes(count: n, fill: fill)), byteCount: n)
  }

  /// A tensor of `dtype`/`shape` that several threads write in place, each calling
  /// `populateForWriting` on its part first.
  ///
  /// Why: `build`'s fresh pages are mapped (and zeroed by the kernel) on the thread that
  /// allocates, before the writers start; for rtn's codes on the shared 135M model that serial
  /// mapping was a quarter of the pass. Each writer mapping its own rows shares it out.
  public static func buildInParallel(dtype: DType, shape: [Int]) -> TensorData {
    let n = shape.reduce(1, *) * dtype.byteSize
    return TensorData(
      dtype: dtype, shape: shape, storage: .owned(OwnedBytes(unpopulated: n)), byteCount: n)
  }

  /// Maps the pages under bytes `range` of a `buildInParallel` tensor for writing, on the
  /// calling thread (no-op for other storage).
  public func populateForWriting(_ range: Range<Int>) {
    if case .owned(let o) = storage { o.populateForWriting(range) }
  }
}

/// Decodes one FP8 E4M3 (`float8_e4m3fn`) byte: bias 7, no infinities, 0x7F/0xFF are NaN.
@inlinable public func e4m3ToFloat(_ b: UInt8) -> Float {
  let sign: Float = (b & 0x80) != 0 ? -1 : 1
  let e = Int((b >> 3) & 0xF)
  let m = Float(b & 0x7)
  if e == 0xF && (b & 0x7) == 0x7 { return .nan }
  if e == 0 { return sign * m / 8 * Float(sign: .plus, exponent: -6, significand: 1) }
  return sign * (1 + m / 8) * Float(sign: .plus, exponent: e - 7, significand: 1)
}
