import QoptFormats
import QoptIR
import QoptTestSupport
import Testing

/// llama.cpp's imatrix files (../shared/data/kquants/smollm2-calib.imatrix.{gguf,dat}, both
/// written by llama-imatrix; the .dat converted from the .gguf): read, compared with each
/// other, and written back byte for byte.
@Suite(
  .enabled(
    if: fileExists(ImatrixRefs.gguf) && fileExists(ImatrixRefs.dat),
    "needs ../shared/data/kquants/smollm2-calib.imatrix.{gguf,dat} beside the checkout"))
struct ImatrixReferenceFileTests {
  @Test func ggufAndDatAgree() throws {
    let g = try ImatrixFile.read(path: ImatrixRefs.gguf)
    let d = try ImatrixFile.read(path: ImatrixRefs.dat)
    #expect(!g.isLegacy && d.isLegacy)
    #expect(g.entries.count == 210)
    #expect(Set(g.entries.keys) == Set(d.entries.keys))
    #expect(g.chunkCount == 32 && g.chunkSize == 512 && d.chunkCount == 32)
    #expect(g.datasets == d.datasets && g.datasets.count == 1)
    for (name, gs) in g.entries {
      let ds = try #require(d.entries[name])
      #expect(gs.tokens == [16384] && ds.tokens == [32], "\(name)")
      // llama-quantize's weights: sum / count from the GGUF, value / ncall from the .dat.
      let (a, b) = (gs.columnWeights(), ds.columnWeights())
      #expect(a.count == b.count)
      let worst = zip(a, b).map { abs($0 - $1) / max(abs($0), 1e-30) }.max() ?? 0
      #expect(worst < 1e-6, "\(name): relative difference \(worst)")
    }
  }

  /// Writing what was read reproduces llama-imatrix's bytes: its GGUF file, and the .dat its
  /// `--output-format dat` made from it (chunk size 512).
  @Test func writesLlamaImatrixBytes() throws {
    let g = try ImatrixFile.read(path: ImatrixRefs.gguf)
    #expect(g.ggufBytes() == (try readFile(ImatrixRefs.gguf)))
    #expect(g.legacyBytes() == (try readFile(ImatrixRefs.dat)))
  }
}

enum ImatrixRefs {
  static let gguf = TestPaths.shared + "/data/kquants/smollm2-calib.imatrix.gguf"
  static let dat = TestPaths.shared + "/data/kquants/smollm2-calib.imatrix.dat"
}

/// Reading hostile or mistaken files: located errors, never a trap.
struct ImatrixFileErrorTests {
  private func write(_ bytes: [UInt8], _ body: (String) throws -> Void) throws {
    try TestTemporary.withDirectory("imatrix") { dir in
      let path = dir + "/x.dat"
      let w = try AtomicFileWriter(path: path)
      try w.write(bytes)
      try w.commit()
      try body(path)
    }
  }

  private func expectError(_ bytes: [UInt8], _ needle: String) throws {
    try write(bytes) { path in
      do {
        _ = try ImatrixFile.read(path: path)
        Issue.record("expected an error containing '\(needle)'")
      } catch {
        let text = String(describing: error)
        #expect(text.contains(needle), "\(text)")
        #expect(text.hasPrefix(path))
      }
    }
  }

  private func le(_ v: Int32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
  private func f32(_ v: Float) -> [UInt8] {
    withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) }
  }

  private var oneEntry: [UInt8] {
    le(1) + le(1) + Array("w".utf8) + le(2) + le(2) + f32(4) + f32(6)
  }

  @Test func legacyRoundTripAndTrailer() throws {
    try write(oneEntry + le(7) + le(4) + Array("text".utf8)) { path in
      let f = try ImatrixFile.read(path: path)
      #expect(f.isLegacy && f.chunkCount == 7 && f.datasets == ["text"])
      #expect(f.entries["w"]?.columnWeights() == [2, 3])
    }
  }

  @Test func legacyTruncationsAndLies() throws {
    try expectError([], "entry count")
    try expectError(le(0), "entry count 0")
    try expectError(
      le(1_000_000) + [UInt8](repeating: 0, count: 32), "entry count 1000000 does not fit")
    try expectError(
      le(1) + le(99) + Array("w".utf8) + [UInt8](repeating: 0, count: 12),
      "name length 99 runs past")
    try expectError(
      le(1) + le(1) + Array("w".utf8) + le(2) + le(9) + f32(1) + f32(1), "9 values do not fit")
    try expectError(
      le(1) + le(1) + Array("w".utf8) + le(2) + le(-3) + f32(1), "-3 values do not fit")
    try expectError(
      le(2) + Array(oneEntry.dropFirst(4)) + Array(oneEntry.dropFirst(4)), "entry 'w' appears twice"
    )
  }

  /// A GGUF with sums but no counts, and one whose counts are not F32.
  @Test func ggufMismatches() throws {
    var f = ImatrixFile(
      entries: ["w": ImportanceStats(columns: 2, sumSquares: [1, 2], tokens: [3])], datasets: ["d"],
      chunkCount: 1, chunkSize: 3)
    let good = f.ggufBytes()
    try write(good) { path in
      let r = try ImatrixFile.read(path: path)
      #expect(
        r.entries == f.entries && r.datasets == ["d"] && r.chunkCount == 1 && r.chunkSize == 3)
    }
    // Rename the counts tensor so it no longer pairs up.
    var renamed = good
    let key = Array("w.counts".utf8)
    if let at = (0...(renamed.count - key.count)).first(where: {
      Array(renamed[$0..<($0 + key.count)]) == key
    }) {
      renamed[at + 2] = UInt8(ascii: "k")
    }
    try expectError(renamed, "'w' has sums but no '.counts' tensor")
    f.entries["w"]?.tokens = [-1]
    try expectError(f.ggufBytes(), "count -1.0 is not a finite number ≥ 0")
    try expectError(Array(good.prefix(40)), "error")
  }

  /// IR names ↔ llama.cpp names, and the checks against the module's weights.
  @Test func mapsNamesToTheModule() throws {
    let m = try Parser.parse(
      """
      func @f(%x: tensor<?x2xf32>) -> tensor<?x3xf32> {
        %w = param @model.layers.0.self_attn.q_proj.weight : tensor<3x2xf32>
        %y = linear %x, %w : (tensor<?x2xf32>, tensor<3x2xf32>) -> tensor<?x3xf32>
        return %y : tensor<?x3xf32>
      }
      """, file: "m.ir")
    m.weights.set(
      "model.layers.0.self_attn.q_proj.weight",
      .dense(TensorData(floats: [Float](repeating: 0, count: 6), shape: [3, 2])))
    let s = ImportanceStats(columns: 2, sumSquares: [1, 2], tokens: [4])
    let f = ImatrixFile(
      entries: ["blk.0.attn_q.weight": s], datasets: [], chunkCount: 1, chunkSize: 4)
    #expect(
      try f.importance(for: m, path: "f.gguf") == ["model.layers.0.self_attn.q_proj.weight": s])
    m.importance = ["model.layers.0.self_attn.q_proj.weight": s]
    #expect(ImatrixFile(module: m, datasets: [], chunkCount: 1, chunkSize: 4).entries == f.entries)

    let unknown = ImatrixFile(
      entries: ["blk.7.ffn_up.weight": s], datasets: [], chunkCount: 1, chunkSize: 4)
    #expect(throws: FrontendError.self) { try unknown.importance(for: m, path: "f.gguf") }
    do { _ = try unknown.importance(for: m, path: "f.gguf") } catch {
      #expect(
        String(describing: error)
          == "f.gguf: error: key 'blk.7.ffn_up.weight': tensor 'blk.7.ffn_up.weight' (IR name 'model.layers.7.mlp.up_proj.weight') is not a matrix weight of the model"
      )
    }
    let wide = ImatrixFile(
      entries: ["blk.0.attn_q.weight": ImportanceStats(columns: 3)], datasets: [], chunkCount: 1,
      chunkSize: 4)
    do {
      _ = try wide.importance(for: m, path: "f.gguf")
      Issue.record("expected a width error")
    } catch {
      #expect(
        String(describing: error).contains(
          "has 1 × 3 values but weight 'model.layers.0.self_attn.q_proj.weight' has 1 × 2 inputs"))
    }
  }
}
