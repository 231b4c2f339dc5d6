import QoptIR
import QoptSupport
import QoptTestSupport
import Synchronization
import Testing

/// `SafetensorsEntry(stream:)`: chunks handed to the writer out of order and from several
/// threads land where they say; a stream that strays outside its tensor or leaves part of it
/// unwritten is an error naming the tensor, and no file is left behind.
@Test func streamedEntryWritesTheSameFileAsAProducedOne() throws {
  let dir = TestTemporary.makeDirectory("streamed")
  defer { TestTemporary.remove(dir) }
  let values = (0..<1000).map { Float($0) * 0.25 - 7 }
  let whole = TensorData(floats: values, shape: [10, 100])
  try SafetensorsWriter.write(
    [
      SafetensorsEntry(name: "a", data: whole),
      SafetensorsEntry(name: "b", data: TensorData(floats: [1, 2], shape: [2])),
    ],
    to: dir + "/produced.safetensors")
  let streamed = SafetensorsEntry(name: "a", dtype: .f32, shape: [10, 100]) { sink in
    try whole.withUnsafeBytes { raw in
      // Rows in reverse order, two rows a chunk.
      for r in stride(from: 8, through: 0, by: -2) {
        try sink(r * 400, UnsafeRawBufferPointer(rebasing: raw[(r * 400)..<((r + 2) * 400)]))
      }
    }
  }
  try SafetensorsWriter.write(
    [streamed, SafetensorsEntry(name: "b", data: TensorData(floats: [1, 2], shape: [2]))],
    to: dir + "/streamed.safetensors")
  #expect(try readFile(dir + "/streamed.safetensors") == readFile(dir + "/produced.safetensors"))
  // `produce` collects the same chunks into one tensor.
  #expect(try streamed.produce().floats() == values)
}

@Test func streamedEntryOutOfRangeOrShortIsAnError() throws {
  let dir = TestTemporary.makeDirectory("streamed")
  defer { TestTemporary.remove(dir) }
  let outside = SafetensorsEntry(name: "w", dtype: .i32, shape: [4]) { sink in
    let bytes = [UInt8](repeating: 1, count: 8)
    try bytes.withUnsafeBytes { try sink(12, $0) }
  }
  #expect(throws: StorageError.self) {
    try SafetensorsWriter.write([outside], to: dir + "/x.safetensors")
  }
  let short = SafetensorsEntry(name: "w", dtype: .i32, shape: [4]) { sink in
    let bytes = [UInt8](repeating: 1, count: 8)
    try bytes.withUnsafeBytes { try sink(0, $0) }
  }
  do {
    try SafetensorsWriter.write([short], to: dir + "/x.safetensors")
    Issue.record("a short stream was accepted")
  } catch let e as StorageError {
    #expect(e.message.contains("'w'"))
    #expect(e.message.contains("8 bytes streamed, declared 16"))
  }
  #expect(!fileExists(dir + "/x.safetensors"))
}
