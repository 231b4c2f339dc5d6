import QoptIR
import QoptRuntime
import QoptTestSupport
import Testing

/// `Kernels.ggml*` against the values llama.cpp's CPU backend computes for layer 0 of the
/// shared model (Tests/Reference/ggml-forward-ops.safetensors, made by
/// scripts/make-ggml-forward-fixture from tensors dumped out of llama.cpp's graph): every
/// output bit for bit. qopt's own kernels (OpenBLAS, f32 sums) miss these bits, which is what
/// kept `qopt imatrix` from llama-imatrix's values.
@Suite struct GGMLArithmeticTests {
  static let path = TestPaths.repoRoot + "/Tests/Reference/ggml-forward-ops.safetensors"

  /// The named f32 tensor of the fixture.
  static func tensor(_ name: String) throws -> [Float] {
    let bytes = try readFile(path)
    let n = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.1) << (8 * $1.0) }
    let header = try JSON.parse(Array(bytes[8..<(8 + n)]))
    let values = header[name]?["data_offsets"]?.arrayValue?.compactMap { $0.intValue }
    let offsets = try #require(values, "no tensor \(name) in \(path)")
    let data = bytes[(8 + n + offsets[0])..<(8 + n + offsets[1])]
    return data.withUnsafeBytes { raw in
      (0..<(raw.count / 4)).map {
        Float(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))
      }
    }
  }

  /// Count of outputs whose bits differ from ggml's.
  static func mismatches(_ a: [Float], _ b: [Float]) -> Int {
    a.count != b.count
      ? max(a.count, b.count) : zip(a, b).filter { $0.bitPattern != $1.bitPattern }.count
  }

  @Test func tinyBLASProduct() throws {
    let (w, x, y) = (
      try Self.tensor("sgemm.w"), try Self.tensor("sgemm.x"), try Self.tensor("sgemm.y")
    )
    var out = [Float](repeating: 0, count: 6 * 8)
    let done = Kernels.ggmlLinear(
      x, rows: 6, inFeatures: 576, weight: w, outFeatures: 8, into: &out)
    #expect(done)
    #expect(Self.mismatches(out, y) == 0)
    // tinyBLAS declines outputs that are not a multiple of 4: nothing written.
    #expect(!Kernels.ggmlLinear(x, rows: 6, inFeatures: 576, weight: w, outFeatures: 6, into: &out))
  }

  @Test func rmsNormTimesWeight() throws {
    let (x, w, y) = (try Self.tensor("rms.x"), try Self.tensor("rms.w"), try Self.tensor("rms.y"))
    var out = [Float](repeating: 0, count: y.count)
    Kernels.ggmlRMSNorm(x, rows: 4, columns: 576, weight: w, eps: 1e-5, into: &out)
    #expect(Self.mismatches(out, y) == 0)
  }

  @Test func swiGLU() throws {
    let (g, u, y) = (
      try Self.tensor("silu.gate"), try Self.tensor("silu.up"), try Self.tensor("silu.y")
    )
    var s = [Float](repeating: 0, count: g.count)
    Kernels.ggmlSilu(g, count: g.count, into: &s)
    #expect(Self.mismatches(zip(s, u).map { $0 * $1 }, y) == 0)
  }

  @Test func ropeWithGGMLAngles() throws {
    let (x, y) = (try Self.tensor("rope.x"), try Self.tensor("rope.y"))
    let table = RopeTable.ggml(headDim: 64, theta: 100_000, positions: 100)
    // rows 96..<100: offset the table by placing the rows at their positions
    var padded = [Float](repeating: 0, count: 100 * 576)
    for i in 0..<(4 * 576) { padded[96 * 576 + i] = x[i] }
    var out = [Float](repeating: 0, count: padded.count)
    Kernels.ggmlRope(padded, rows: 100, heads: 9, table: table, into: &out, headStride: 64)
    #expect(Self.mismatches(Array(out[(96 * 576)...]), y) == 0)
  }

  @Test func tiledFlashAttention() throws {
    let (q, k, v, y) = (
      try Self.tensor("attn.q"), try Self.tensor("attn.k"), try Self.tensor("attn.v"),
      try Self.tensor("attn.out")
    )
    var out = [Float](repeating: 0, count: y.count)
    Kernels.ggmlAttention(
      q: q, k: k, v: v, tokens: 72, heads: 3, kvHeads: 1, headDim: 64, interleavedQK: true,
      into: &out)
    #expect(Self.mismatches(out, y) == 0)
  }
}
