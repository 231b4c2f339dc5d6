import QoptTestSupport
import Testing

/// The summary `qopt` prints after autoround (stderr) reports, for every block of the example
/// model, a best loss below the first iteration's, reached after the first iteration — for the
/// integer and the NVFP4 scheme.
@Test(arguments: [
  "calibrate<samples=16;seqlen=32>,autoround<iters=40;group-size=32>",
  "calibrate<samples=16;seqlen=32>,autoround<scheme=nvfp4;iters=40>,fuse-scales",
])
func autoRoundSummaryShowsEveryBlocksLossFalling(_ pipeline: String) throws {
  let dir = TinyCheckpoints.scratchDirectory("autoround-summary")
  defer { TinyCheckpoints.removeTree(dir) }
  let r = try ChildProcess.run([
    TestPaths.binDir + "/qopt", "-threads=1", "-passes=" + pipeline, TestPaths.repoRoot + "/IR/examples/tiny-llama.ir", "-o", dir + "/out.ir",
  ])
  #expect(r.termination == .exited(0), "\(r.stderr)")
  // "  block   first loss    best loss  best iter  seconds" then one row per block.
  let lines = r.stderr.split(separator: "\n")
  let header = try #require(lines.firstIndex { $0.contains("first loss") && $0.contains("best loss") }, "no summary in:\n\(r.stderr)")
  let rows = lines[(header + 1)...].map { $0.split(separator: " ") }.filter { $0.count == 5 && Int($0[0]) != nil }
  #expect(rows.map { Int($0[0]) } == [0, 1])
  for row in rows {
    let first = try #require(Double(row[1])), best = try #require(Double(row[2])), iter = try #require(Int(row[3]))
    #expect(first.isFinite && best > 0, "block \(row[0]): \(row)")
    #expect(best < first, "block \(row[0]): best loss \(best) is not below the first \(first)")
    #expect(iter > 0, "block \(row[0]): the best iteration is the first")
  }
}
