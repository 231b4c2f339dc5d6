import QoptIR
import QoptTestSupport
import Testing

/// `ImportanceStats` (llama.cpp's imatrix statistic) and `Module.importance` on disk.
struct ImportanceStatsTests {
  @Test func accumulatesSumsOfSquaresAndCounts() {
    var s = ImportanceStats(columns: 3, experts: 2)
    let x: [Float] = [1, 2, 3, -1, 0, 0.5]
    x.withUnsafeBufferPointer { s.accumulate($0.baseAddress!, rows: 2, expert: 1) }
    #expect(s.sumSquares == [0, 0, 0, 2, 4, 9.25])
    #expect(s.tokens == [0, 2])
    // llama-quantize: mean x² per column, 1 where the expert saw no token.
    #expect(s.columnWeights(expert: 0) == [1, 1, 1])
    #expect(s.columnWeights(expert: 1) == [1, 2, 4.625])
    var t = s
    t.merge(s)
    #expect(t.sumSquares == [0, 0, 0, 4, 8, 18.5] && t.tokens == [0, 4])
  }

  /// `-o x.ir` keeps the statistics: large sums in the sidecar (`W#in_sum2`), small inline.
  @Test func survivesSavingAndLoading() throws {
    let m = try Parser.parse(
      """
      func @f(%x: tensor<?x20xf32>) -> tensor<?x2xf32> {
        %w = param @w : tensor<2x20xf32>
        %y = linear %x, %w : (tensor<?x20xf32>, tensor<2x20xf32>) -> tensor<?x2xf32>
        return %y : tensor<?x2xf32>
      }
      """, file: "m.ir")
    m.weights.set(
      "w", .dense(TensorData(floats: [Float](repeating: 0.5, count: 40), shape: [2, 20])))
    let big = ImportanceStats(
      columns: 20, sumSquares: (0..<40).map { Float($0) / 3 }, tokens: [7, 0])
    let small = ImportanceStats(columns: 2, sumSquares: [0.1, 0.2], tokens: [3])
    m.importance = ["w": big, "other": small]
    try TestTemporary.withDirectory("importance") { dir in
      try ModuleIO.save(m, to: dir + "/m.ir")
      let back = try ModuleIO.load(path: dir + "/m.ir")
      #expect(back.importance == m.importance)
      try back.verify()
      // A sidecar without the sums is refused with the tensor's name.
      let text = try String(decoding: readFile(dir + "/m.ir"), as: UTF8.self)
      let bare = dir + "/bare.ir"
      let w = try AtomicFileWriter(path: bare)
      try w.write(text.replacingOccurrences(of: "// sidecar-id:", with: "// was:"))
      try w.commit()
      try SafetensorsWriter.write(
        [
          SafetensorsEntry(
            name: "w", data: TensorData(floats: [Float](repeating: 0, count: 40), shape: [2, 20]))
        ], to: dir + "/bare.safetensors")
      #expect(throws: StorageError.self) { try ModuleIO.load(path: bare) }
    }
  }
}
