import QoptIR

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// One entry of the tensor-info table.
public struct GGUFTensorInfo: Sendable {
  public var name: String
  /// ggml order: `dims[0]` is the contiguous dimension.
  public var dims: [Int]
  public var type: GGMLType
  /// Offset relative to the data section.
  public var offset: Int
  public var byteCount: Int
  /// Where the info record starts in the file (for diagnostics).
  public var infoOffset: Int

  public var elementCount: Int { dims.reduce(1, *) }
  /// The row-major (PyTorch) shape: `dims` reversed.
  public var shape: [Int] { dims.reversed() }
}

/// A parsed GGUF file (v2 or v3, little-endian): metadata, tensor infos and the mapped data.
///
/// Nothing is decoded up front; `bytes(of:)` hands out a tensor's mapped bytes. Every count
/// and length is checked against the bytes left before anything is allocated, so a corrupt
/// file is an error naming the file and byte offset, never a crash or a huge allocation.
public struct GGUFFile {
  public let path: String
  public let file: MappedFile
  public let version: UInt32
  /// Metadata in file order.
  public let metadata: [(key: String, value: GGUFValue)]
  public let tensors: [GGUFTensorInfo]
  public let alignment: Int
  /// File offset of the tensor data section.
  public let dataStart: Int
  private let index: [String: Int]
  private let keyOffsets: [String: Int]
  /// Where each metadata record (key, type, value) ends, for copying records verbatim.
  private let recordEnds: [String: Int]

  public init(path: String) throws(FrontendError) {
    let f: MappedFile
    do { f = try MappedFile(path: path) } catch { throw FrontendError(error) }
    try self.init(file: f)
  }

  public init(file: MappedFile) throws(FrontendError) {
    self.file = file
    self.path = file.path
    var r = ByteReader(bytes: file.all, path: file.path)
    let magic = try r.u32()
    guard magic == 0x4655_4747 else {
      throw FrontendError(file: path, offset: 0, "bad magic: not a GGUF file (expected 'GGUF')")
    }
    version = try r.u32()
    guard version == 2 || version == 3 else {
      if version == 0x0300_0000 || version == 0x0200_0000 {
        throw FrontendError(file: path, offset: 4, "big-endian GGUF files are not supported")
      }
      throw FrontendError(file: path, offset: 4, "unsupported GGUF version \(version) (supported: 2, 3)")
    }
    let tensorCount = try r.count(minBytesEach: 8 + 4 + 4 + 8, what: "tensor count")
    let kvCount = try r.count(minBytesEach: 8 + 4 + 1, what: "metadata count")
    var meta: [(key: String, value: GGUFValue)] = []
    var keyOffsets: [String: Int] = [:]
    var recordEnds: [String: Int] = [:]
    for _ in 0..<kvCount {
      let at = r.pos
      let key = try r.string()
      guard keyOffsets[key] == nil else { throw FrontendError(file: path, offset: at, "duplicate metadata key '\(key)'") }
      keyOffsets[key] = at
      let type = try r.u32()
      meta.append((key, try r.value(type: type, typeOffset: r.pos - 4, depth: 0)))
      recordEnds[key] = r.pos
    }
    var alignment = 32
    if let i = meta.firstIndex(where: { $0.key == "general.alignment" }) {
      // safe: the key was recorded when read.
      let at = keyOffsets["general.alignment"]!
      guard let a = meta[i].value.unsignedValue, a > 0, a <= 1 << 30, a & (a - 1) == 0 else {
        throw FrontendError(file: path, offset: at, "general.alignment must be a power of two u32")
      }
      alignment = Int(a)
    }
    var infos: [GGUFTensorInfo] = []
    var index: [String: Int] = [:]
    for _ in 0..<tensorCount {
      let at = r.pos
      let name = try r.string()
      guard index[name] == nil else { throw FrontendError(file: path, offset: at, "duplicate tensor name '\(name)'") }
      let nd = try r.u32()
      guard nd >= 1 && nd <= 4 else {
        throw FrontendError(file: path, offset: r.pos - 4, "tensor '\(name)': \(nd) dimensions (1 to 4 supported)")
      }
      var dims: [Int] = []
      var elements = 1
      for _ in 0..<nd {
        let d = try r.u64()
        guard d <= UInt64(Int32.max) else { throw FrontendError(file: path, offset: r.pos - 8, "tensor '\(name)': dimension \(d) is too large") }
        dims.append(Int(d))
        let (p, o) = elements.multipliedReportingOverflow(by: Int(d))
        guard !o, p <= Int(UInt32.max) * 16 else { throw FrontendError(file: path, offset: r.pos - 8, "tensor '\(name)': element count overflows") }
        elements = p
      }
      let typeRaw = try r.u32()
      guard let type = GGMLType(rawValue: typeRaw) else {
        throw FrontendError(file: path, offset: r.pos - 4, "tensor '\(name)': unknown ggml tensor type \(typeRaw)")
      }
      let (be, bb) = type.blockLayout
      guard dims[0] % be == 0 else {
        throw FrontendError(file: path, offset: at, "tensor '\(name)': first dimension \(dims[0]) is not a multiple of the \(type.name) block size \(be)")
      }
      let off64 = try r.u64()
      guard off64 <= UInt64(Int.max / 2) else { throw FrontendError(file: path, offset: r.pos - 8, "tensor '\(name)': offset \(off64) out of range") }
      let off = Int(off64)
      guard off % alignment == 0 else {
        throw FrontendError(file: path, offset: r.pos - 8, "tensor '\(name)': data offset \(off) is not a multiple of the alignment \(alignment)")
      }
      index[name] = infos.count
      infos.append(GGUFTensorInfo(name: name, dims: dims, type: type, offset: off, byteCount: elements / be * bb, infoOffset: at))
    }
    let start = (r.pos + alignment - 1) / alignment * alignment
    dataStart = start
    for t in infos {
      let (end, o) = (start + t.offset).addingReportingOverflow(t.byteCount)
      guard !o, end <= file.size else {
        throw FrontendError(file: path, offset: min(start + t.offset, file.size), "tensor '\(t.name)': data [\(start + t.offset), \(start + t.offset + t.byteCount)) runs past the end of the file (\(file.size) bytes): truncated tensor data")
      }
    }
    // Overlapping tensors would alias each other's bytes: reject them like safetensors does.
    var lastEnd = 0
    var lastName = ""
    for t in infos.sorted(by: { $0.offset < $1.offset }) {
      guard t.offset >= lastEnd else {
        throw FrontendError(file: path, offset: start + t.offset, "tensor '\(t.name)' overlaps tensor '\(lastName)'")
      }
      lastEnd = t.offset + t.byteCount
      lastName = t.name
    }
    self.metadata = meta
    self.keyOffsets = keyOffsets
    self.recordEnds = recordEnds
    self.tensors = infos
    self.index = index
    self.alignment = alignment
  }

  public subscript(key: String) -> GGUFValue? {
    metadata.first { $0.key == key }?.value
  }

  /// The file offset of a metadata key's record (for diagnostics), or the header start.
  public func offset(ofKey key: String) -> Int { keyOffsets[key] ?? 0 }

  /// A metadata record's bytes as they stand in the file (key, type id and value), so a
  /// writer can carry it over without decoding and re-encoding it.
  public func rawRecord(_ key: String) -> UnsafeRawBufferPointer? {
    guard let start = keyOffsets[key], let end = recordEnds[key] else { return nil }
    return file.bytes(offset: start, count: end - start)
  }

  public func tensor(named name: String) -> GGUFTensorInfo? {
    index[name].map { tensors[$0] }
  }

  /// The mapped bytes of a tensor (range checked at open).
  public func bytes(of t: GGUFTensorInfo) -> UnsafeRawBufferPointer {
    file.bytes(offset: dataStart + t.offset, count: t.byteCount)
  }
}

/// A bounds-checked little-endian cursor over the header.
struct ByteReader {
  let bytes: UnsafeRawBufferPointer
  let path: String
  var pos = 0

  var remaining: Int { bytes.count - pos }

  func truncated(_ what: String, need: Int) -> FrontendError {
    FrontendError(file: path, offset: pos, "truncated file: \(what) needs \(need) bytes, \(remaining) left")
  }

  mutating func take(_ n: Int, _ what: String) throws(FrontendError) -> Int {
    guard n >= 0, n <= remaining else { throw truncated(what, need: n) }
    defer { pos += n }
    return pos
  }
  mutating func u8() throws(FrontendError) -> UInt8 { bytes[try take(1, "u8")] }
  mutating func u16() throws(FrontendError) -> UInt16 { bytes.loadUnaligned(fromByteOffset: try take(2, "u16"), as: UInt16.self) }
  mutating func u32() throws(FrontendError) -> UInt32 { bytes.loadUnaligned(fromByteOffset: try take(4, "u32"), as: UInt32.self) }
  mutating func u64() throws(FrontendError) -> UInt64 { bytes.loadUnaligned(fromByteOffset: try take(8, "u64"), as: UInt64.self) }

  /// A u64 count, checked so that `count × minBytesEach` fits in the bytes left.
  mutating func count(minBytesEach: Int, what: String) throws(FrontendError) -> Int {
    let at = pos
    let n = try u64()
    guard n <= UInt64(remaining / max(minBytesEach, 1)) else {
      throw FrontendError(file: path, offset: at, "\(what) \(n) cannot fit in the \(remaining) bytes left: truncated or corrupt file")
    }
    return Int(n)
  }

  mutating func string() throws(FrontendError) -> String {
    let at = pos
    let n = try count(minBytesEach: 1, what: "string length")
    let start = try take(n, "string")
    // `String(decoding:)` on a typed buffer takes the standard library's fast contiguous path
    // (a vocabulary is ~10^5 strings); it repairs bad bytes, so valid means unchanged.
    let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<(start + n)])
    let s = String(decoding: UnsafeBufferPointer(start: raw.baseAddress?.assumingMemoryBound(to: UInt8.self), count: n), as: UTF8.self)
    var same = s.utf8.count == n
    if same, n > 0 {
      same = s.utf8.withContiguousStorageIfAvailable { memcmp($0.baseAddress!, raw.baseAddress!, n) == 0 } ?? Array(s.utf8).elementsEqual(raw)  // safe: n > 0
    }
    guard same else { throw FrontendError(file: path, offset: at, "string is not valid UTF-8") }
    return s
  }

  /// Smallest encoding of one element of a metadata type (for count checks).
  static func minSize(_ type: UInt32) -> Int {
    switch type {
    case 0, 1, 7: 1
    case 2, 3: 2
    case 4, 5, 6: 4
    case 8, 10, 11, 12: 8
    case 9: 12
    default: 1
    }
  }

  mutating func value(type: UInt32, typeOffset: Int, depth: Int) throws(FrontendError) -> GGUFValue {
    switch type {
    case 0: return .u8(try u8())
    case 1: return .i8(Int8(bitPattern: try u8()))
    case 2: return .u16(try u16())
    case 3: return .i16(Int16(bitPattern: try u16()))
    case 4: return .u32(try u32())
    case 5: return .i32(Int32(bitPattern: try u32()))
    case 6: return .f32(Float(bitPattern: try u32()))
    case 7:
      let at = pos
      let b = try u8()
      guard b <= 1 else { throw FrontendError(file: path, offset: at, "bool value \(b) is not 0 or 1") }
      return .bool(b == 1)
    case 8: return .string(try string())
    case 9:
      guard depth < 4 else { throw FrontendError(file: path, offset: typeOffset, "arrays nested too deeply") }
      let et = try u32()
      let etOffset = pos - 4
      let n = try count(minBytesEach: ByteReader.minSize(et), what: "array length")
      var out: [GGUFValue] = []
      out.reserveCapacity(n)
      for _ in 0..<n { out.append(try value(type: et, typeOffset: etOffset, depth: depth + 1)) }
      return .array(elementType: et, out)
    case 10: return .u64(try u64())
    case 11: return .i64(Int64(bitPattern: try u64()))
    case 12: return .f64(Double(bitPattern: try u64()))
    default:
      throw FrontendError(file: path, offset: typeOffset, "unknown metadata value type \(type)")
    }
  }
}
