import QoptFrontends
import QoptIR
import QoptRuntime
import QoptTestSupport
import Testing

/// A window's float forward through a decoder block does not depend on which other windows
/// share its batch (and so its GEMMs): 8 windows forwarded together, one at a time, and as
/// 3 + 5 give the same bits, on the shared SmolLM2-135M's block 0 (576 wide, the GEMM sizes
/// calibration uses). The cache phase does not rely on it (each pass stores what its own
/// batching computes, docs/scale-out.md); splitting calibration over data shards would.
@Test func blockForwardIsIndependentOfBatchMates() throws {
  let path = TestPaths.shared + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
  try #require(fileExists(path), "missing \(path): the real-model tests need ../shared")
  let m = try ModelImporter.load(path: path)
  let f = try #require(m.function(named: "block.0"))
  let exec = try BlockExecutor(function: f, module: m)
  let (n, t, d) = (8, 64, exec.hiddenWidth)
  var rng = SplitMix64(seed: 7)
  let x = (0..<(n * t * d)).map { _ in Float(rng.normal()) }
  func run(_ groups: [Int]) -> [UInt32] {
    var out: [UInt32] = []
    var s = 0
    for g in groups {
      let part = Array(x[(s * t * d)..<((s + g) * t * d)])
      let y = exec.forward(part, samples: g, tokens: t)
      out += UnsafeBufferPointer(start: y, count: g * t * d).map(\.bitPattern)
      s += g
    }
    return out
  }
  let together = run([8])
  #expect(run(Array(repeating: 1, count: 8)) == together, "one window at a time")
  #expect(run([3, 5]) == together, "3 + 5 windows")
}
