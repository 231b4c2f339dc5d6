import QoptIR

/// One tensor of a GGUF file to be written: its name, row-major shape (written reversed, in
/// ggml order), type, and a closure producing its encoded bytes when the writer reaches it.
package struct GGUFTensorEntry {
  package var name: String
  package var shape: [Int]
  package var type: GGMLType
  package var produce: () throws -> [UInt8]

  package init(name: String, shape: [Int], type: GGMLType, produce: @escaping () throws -> [UInt8]) {
    self.name = name
    self.shape = shape
    self.type = type
    self.produce = produce
  }

  var byteCount: Int { type.byteCount(elements: shape.reduce(1, *)) }
}

/// Writes GGUF version 3 (reference/gguf.md §1): header, metadata, tensor infos with offsets
/// relative to the aligned data section, and tensor data padded to `alignment`, streaming one
/// tensor at a time through an `AtomicFileWriter`.
package enum GGUFFileWriter {
  static let alignment = 32

  package static func write(metadata: [(String, GGUFValue)], tensors: [GGUFTensorEntry], to path: String) throws {
    let out = try AtomicFileWriter(path: path)
    var head: [UInt8] = []
    func le<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { head.append(contentsOf: $0) } }
    head += Array("GGUF".utf8)
    le(UInt32(3))
    le(UInt64(tensors.count))
    le(UInt64(metadata.count))
    for (k, v) in metadata {
      GGUFValue.string(k).encode(into: &head)
      le(v.typeID)
      v.encode(into: &head)
    }
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
    for t in tensors {
      let bytes = try t.produce()
      guard bytes.count == t.byteCount else {
        throw BackendError(output: path, tensor: t.name, "encoder produced \(bytes.count) bytes, expected \(t.byteCount)")
      }
      try out.write(bytes)
      let pad = padded(bytes.count) - bytes.count
      if pad > 0 { try out.write([UInt8](repeating: 0, count: pad)) }
    }
    try out.commit()
  }

  static func padded(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }
}
