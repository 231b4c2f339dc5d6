import QoptIR
import QoptTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

func writeBytes(_ bytes: [UInt8], to path: String) {
  let f = fopen(path, "wb")!
  _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
  fclose(f)
}

/// safetensors.md §6: byte layouts produced by the reference package.
@Test func writerMatchesReferenceExample1() throws {
  let pathDir = TestTemporary.makeDirectory("unit")
  defer { TestTemporary.remove(pathDir) }
  let path = pathDir + "/" + "ex1.safetensors"
  try SafetensorsWriter.write([SafetensorsEntry(name: "a", data: TensorData(floats: [1, 2], shape: [2]))], to: path)
  let bytes = try readFile(path)
  #expect(bytes.count == 72)
  #expect(Array(bytes[0..<8]) == [0x38, 0, 0, 0, 0, 0, 0, 0])
  #expect(String(decoding: bytes[8..<64], as: UTF8.self) == #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  "#)
  #expect(Array(bytes[64...]) == [0, 0, 0x80, 0x3F, 0, 0, 0, 0x40])
}

@Test func writerMatchesReferenceExample2() throws {
  let pathDir = TestTemporary.makeDirectory("unit")
  defer { TestTemporary.remove(pathDir) }
  let path = pathDir + "/" + "ex2.safetensors"
  var f64: [UInt8] = []
  withUnsafeBytes(of: (1.0 as Double).bitPattern.littleEndian) { f64 += $0 }
  try SafetensorsWriter.write([
    SafetensorsEntry(name: "w", data: TensorData(dtype: .i8, shape: [2, 2], bytes: [1, 2, 3, 4])),
    SafetensorsEntry(name: "b", data: TensorData(floats: [0.5], shape: [1], as: .bf16)),
    SafetensorsEntry(name: "x", data: TensorData(dtype: .i64, shape: [1], bytes: f64)),
  ], metadata: [("format", "pt")], to: path)
  let bytes = try readFile(path)
  // The reference writes x as F64; qopt has no f64 dtype, so compare everything but that name.
  let header = String(decoding: bytes[8..<208], as: UTF8.self)
  #expect(header.hasPrefix(#"{"__metadata__":{"format":"pt"},"x":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[8,10]},"w":{"dtype":"I8","shape":[2,2],"data_offsets":[10,14]}}"#))
  #expect(bytes.count == 222)
  #expect(Array(bytes[208...]) == [0, 0, 0, 0, 0, 0, 0xF0, 0x3F, 0x00, 0x3F, 1, 2, 3, 4])
}

@Test func readerRoundTripsAndStaysLazy() throws {
  let pathDir = TestTemporary.makeDirectory("unit")
  defer { TestTemporary.remove(pathDir) }
  let path = pathDir + "/" + "rt.safetensors"
  try SafetensorsWriter.write([
    SafetensorsEntry(name: "s", data: TensorData(floats: [3], shape: [])),
    SafetensorsEntry(name: "e", data: TensorData(floats: [], shape: [0, 4])),
    SafetensorsEntry(name: "m", data: TensorData(floats: [1, 2, 3, 4, 5, 6], shape: [2, 3], as: .f16)),
  ], to: path)
  let f = try SafetensorsFile(path: path)
  #expect(f.tensor(named: "s")?.floats() == [3])
  #expect(f.tensor(named: "e")?.shape == [0, 4])
  #expect(f.tensor(named: "m")?.floats() == [1, 2, 3, 4, 5, 6])
  #expect(f.tensor(named: "m")?.dtype == .f16)
}

/// Builds a file from a header string and data bytes.
func rawSafetensors(_ header: String, data: [UInt8]) -> [UInt8] {
  var h = Array(header.utf8)
  var out: [UInt8] = []
  withUnsafeBytes(of: UInt64(h.count).littleEndian) { out += $0 }
  out += h
  h = []
  return out + data
}

@Test(arguments: [
  (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}"#, 16, "gap in data before tensor 'b'"),
  (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 12, "data buffer has 4 bytes after the last tensor"),
  (#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8, "F32 [3] needs 12 bytes but data_offsets span 8"),
  (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, 12, "overlaps the previous tensor"),
  (#"{"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#, 8, "unsupported dtype 'Q9'"),
  (#"{"a":{"dtype":"F32","shape":[20],"data_offsets":[0,80]}}"#, 8, "run past the end of the data"),
  (#"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#, 8, "overflows"),
  (#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, 8, "non-negative"),
  (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, 16, "duplicate key \"a\""),
  (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]"#, 8, "header is not valid JSON"),
  (#"[1,2]"#, 0, "header is not a JSON object"),
  (#"{"__metadata__":{"n":1}}"#, 0, "__metadata__ value for 'n' is not a string"),
])
func readerRejects(_ header: String, _ dataBytes: Int, _ message: String) {
  let pathDir = TestTemporary.makeDirectory("unit")
  defer { TestTemporary.remove(pathDir) }
  let path = pathDir + "/" + "bad-\(abs(header.hashValue)).safetensors"
  writeBytes(rawSafetensors(header, data: [UInt8](repeating: 0, count: dataBytes)), to: path)
  #expect {
    _ = try SafetensorsFile(path: path)
  } throws: { error in
    let e = error as? StorageError
    return e?.message.contains(message) == true && e?.file == path
  }
}

@Test func readerRejectsShortFilesAndHugeHeaders() {
  let shortDir = TestTemporary.makeDirectory("unit")
  defer { TestTemporary.remove(shortDir) }
  let short = shortDir + "/" + "short.safetensors"
  writeBytes([1, 2, 3], to: short)
  #expect(throws: StorageError.self) { _ = try SafetensorsFile(path: short) }
  let hugeDir = TestTemporary.makeDirectory("unit")
  defer { TestTemporary.remove(hugeDir) }
  let huge = hugeDir + "/" + "huge.safetensors"
  var b: [UInt8] = []
  withUnsafeBytes(of: UInt64(1 << 62).littleEndian) { b += $0 }
  writeBytes(b + [0x7B], to: huge)
  #expect {
    _ = try SafetensorsFile(path: huge)
  } throws: { ($0 as? StorageError)?.message.contains("exceeds the limit") == true }
}
