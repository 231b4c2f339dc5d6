import QoptIR
import QoptPasses
import QoptTestSupport
import Testing

func nvfp4(_ w: [Float], rows: Int = 1, gs: Float? = nil) -> QuantizedTensor {
  w.withUnsafeBufferPointer { NVFP4Quantizer.quantize($0, rows: rows, cols: w.count / rows, globalScale: gs) }
}

/// Packs E2M1 nibbles as compressed-tensors does: element 2k low nibble, 2k+1 high nibble.
func packNibbles(_ codes: [UInt8]) -> [UInt8] {
  stride(from: 0, to: codes.count, by: 2).map { codes[$0] | codes[$0 + 1] << 4 }
}

/// nvfp4.md §2 and §9.4: E4M3 encodings from torch.
@Test func e4m3EncodesTheReferenceValues() {
  let cases: [(Float, UInt8)] = [
    (96, 0x6C), (97.0667, 0x6C), (100, 0x6C), (104, 0x6D), (112, 0x6E), (17, 0x58), (1, 0x38),
    (6, 0x4C), (0.125, 0x20), (0.001, 0x01), (464, 0x7E), (448, 0x7E), (-448, 0xFE), (0, 0), (-1, 0xB8),
  ]
  for (x, b) in cases { #expect(floatToE4M3(x) == b, "\(x)") }
}

/// Every finite f16 value encodes to the nearest E4M3 value (ties to the even code), checked
/// against a brute-force search over the E4M3 grid.
@Test func e4m3MatchesNearestEvenSearchForEveryF16() {
  let grid: [(Float, UInt8)] = (0...0x7E).map { (e4m3ToFloat(UInt8($0)), UInt8($0)) }
  for bits in 0...UInt16.max {
    let x = f16ToFloat(bits)
    guard x.isFinite else { continue }
    let a = min(abs(x), 448)
    var best = grid[0]
    for g in grid {
      let d = abs(g.0 - a), db = abs(best.0 - a)
      if d < db || (d == db && g.1 & 1 == 0 && best.1 & 1 == 1) { best = g }
    }
    let expected = (x.sign == .minus ? 0x80 : 0) | best.1
    #expect(floatToE4M3(x) == expected, "f16 bits \(bits) = \(x)")
  }
}

/// compressed-tensors.md §8.8 / nvfp4.md §9.5: E2M1 encodings.
@Test func e2m1EncodesTheReferenceValues() {
  let cases: [(Float, UInt8)] = [
    (0.25, 0x0), (0.26, 0x1), (0.74, 0x1), (0.75, 0x2), (1.25, 0x2), (1.26, 0x3), (1.75, 0x4), (2.5, 0x4),
    (2.51, 0x5), (3.5, 0x6), (5.0, 0x6), (5.01, 0x7), (6.0, 0x7), (-0.1, 0x8), (-0.3, 0x9), (-3.0, 0xD), (-6.0, 0xF),
  ]
  for (x, c) in cases { #expect(floatToE2M1(x) == c, "\(x)") }
}

/// compressed-tensors.md §7.3 / §8.9: the two-group row.
@Test func twoGroupRowMatchesCompressedTensors() {
  let w: [Float] = [
    0.0, 0.25, 0.3, 0.75, 1.25, 1.3, 1.75, 2.5, 2.6, 3.5, 5.0, 5.1, -6.0, -0.1, -1.0, -4.0,
    1.3, -1.3, 0.2, -0.2, 0.5, 0.65, -0.9, 1.0, 0.05, -0.05, 0.33, 0.75, -1.1, 1.2, 0.0, 0.4,
  ]
  let q = nvfp4(w)
  #expect(q.globalScale?.floats() == [448])
  #expect(q.scale.bytes == [0x7E, 0x6C])
  #expect(packNibbles(q.codes.bytes) == [0x00, 0x21, 0x32, 0x44, 0x65, 0x76, 0x8f, 0xea, 0xf7, 0xa2, 0x54, 0x6e, 0x80, 0x63, 0x7f, 0x40])
  let dq = Array(q.dequantized()[16...])
  let expected: [Float] = [1.2857143, -1.2857143, 0.2142857, -0.2142857, 0.4285714, 0.6428571, -0.8571429, 0.8571429, 0, -0, 0.3214286, 0.8571429, -1.2857143, 1.2857143, 0, 0.4285714]
  for (a, b) in zip(dq, expected) { #expect(abs(a - b) < 1e-6) }
}

/// compressed-tensors.md §8.10: an all-zero group gets scale 0.125 (0x20).
@Test func zeroGroupGetsTheEpsilonScale() {
  let q = nvfp4([Float](repeating: 0, count: 16) + [Float](repeating: 0.5, count: 16))
  #expect(q.globalScale?.floats() == [5376])
  #expect(q.scale.bytes == [0x20, 0x7E])
  #expect(packNibbles(q.codes.bytes) == [UInt8](repeating: 0, count: 8) + [UInt8](repeating: 0x77, count: 8))
}

/// nvfp4.md §9.1 and §9.6.
@Test func globalScalesAndDequantization() {
  #expect(NVFP4Quantizer.globalScale(amax: 6) == 448)
  #expect(NVFP4Quantizer.globalScale(amax: 0.5) == 5376)
  #expect(abs(NVFP4Quantizer.globalScale(amax: 0.78125) - 3440.64) < 1e-3)
  #expect(NVFP4Quantizer.globalScale(amax: 0) == 1)
  #expect(abs(e2m1ToFloat(0xD) * e4m3ToFloat(0x6C) / 448 - -0.6428571) < 1e-6)
}

/// nvfp4.md §9.3: q, k, v with row-0 maxima 1, 2, 0.5 and rows of 0.25 fuse to gs 1344.
@Test func fuseScalesMatchesTheReferenceFusion() throws {
  func row0(_ v: Float) -> String { ([v] + [Float](repeating: 0, count: 15) + [Float](repeating: 0.25, count: 16)).map { "\($0)" }.joined(separator: ", ") }
  let text = """
    func @attn(%x: tensor<?x16xf32>) -> tensor<?x2xf32> {
      %wq = param @q : tensor<2x16xf32> = dense<[\(row0(1))]>
      %wk = param @k : tensor<2x16xf32> = dense<[\(row0(2))]>
      %wv = param @v : tensor<2x16xf32> = dense<[\(row0(0.5))]>
      %q = linear %x, %wq : (tensor<?x16xf32>, tensor<2x16xf32>) -> tensor<?x2xf32>
      %k = linear %x, %wk : (tensor<?x16xf32>, tensor<2x16xf32>) -> tensor<?x2xf32>
      %v = linear %x, %wv : (tensor<?x16xf32>, tensor<2x16xf32>) -> tensor<?x2xf32>
      %s = add %q, %k : (tensor<?x2xf32>, tensor<?x2xf32>) -> tensor<?x2xf32>
      %t = add %s, %v : (tensor<?x2xf32>, tensor<?x2xf32>) -> tensor<?x2xf32>
      return %t : tensor<?x2xf32>
    }
    """
  let m = try Parser.parse(text, file: "f.ir")
  let pm = PassManager(threads: 1) { _ in }
  try pm.run(PipelineParser.parse("rtn<scheme=nvfp4>", registry: .builtin()), on: m)
  #expect(["q", "k", "v"].map { m.weights.quantized($0)!.globalScale!.floats()[0] } == [2688, 1344, 5376])
  #expect(!m.nvfp4FusionProblems().isEmpty)
  try pm.run(PipelineParser.parse("fuse-scales,verify", registry: .builtin()), on: m)
  let q = ["q", "k", "v"].map { m.weights.quantized($0)! }
  #expect(q.allSatisfy { $0.globalScale!.floats() == [1344] })
  #expect(q.map { $0.scale.floats()[0] } == [224, 448, 112])
  #expect(q.allSatisfy { $0.scale.floats()[1] == 56 })
  #expect(m.nvfp4FusionProblems().isEmpty)
}

/// The fused sets come from the dataflow: renaming every tensor finds the same sets.
@Test func fusedSetsSurviveRenamingEveryTensor() throws {
  func run(rename: Bool) throws -> [[Float]] {
    let m = ExampleModel.make()
    if rename {
      for op in m.allOps {
        guard let n = op.paramName, let e = m.weights[n] else { continue }
        let new = "t\(abs(n.hashValue) % 100000)_" + String(n.reversed())
        m.weights.remove(n)
        m.weights.set(new, e)
        op.attributes["name"] = .symbol(new)
      }
    }
    let pm = PassManager(threads: 1) { _ in }
    try pm.run(PipelineParser.parse("rtn<scheme=nvfp4>,fuse-scales,verify", registry: .builtin()), on: m)
    return m.linearInputGroups().map { g in g.weightNames.map { m.weights.quantized($0)!.globalScale!.floats()[0] } }
  }
  let plain = try run(rename: false)
  #expect(plain.count == 4)
  #expect(plain.allSatisfy { Set($0).count == 1 })
  #expect(try run(rename: true) == plain)
}
