import QoptFrontends
import QoptIR
import QoptPasses
import QoptRuntime
import QoptTestSupport
import Testing

/// Accuracy regressions on the shared SmolLM2-135M GGUF: quantized perplexity on dev_eval.txt
/// by the anchors.md protocol (no BOS, the first 40 non-overlapping windows of 512 tokens,
/// mean NLL over the 20,440 predictions) must match the reference tools' figures within 0.1 %.
/// Part of the serialized real-model suite (one model in memory at a time); minutes on two cores.
private let shared: String = {
  let root = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false).dropLast(3).joined(separator: "/")
  return root + "/../shared"
}()
private let ggufPath = shared + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"

/// The dev_eval.txt perplexity of the shared model after `pipeline`.
private func quantizedPerplexity(_ pipeline: String) throws -> PerplexityResult {
  try #require(fileExists(ggufPath), "missing \(ggufPath): the real-model tests need ../shared beside the checkout")
  BLAS.setThreads(2)
  let m = try ModelImporter.load(path: ggufPath)
  try PassManager(threads: 2) { _ in }.run(PipelineParser.parse(pipeline, registry: .builtin()), on: m)
  try m.verify()
  let j = try JSON.parse(try readFile(shared + "/data/dev_eval.tokens.json"))
  let ids = try #require(j.arrayValue).compactMap(\.intValue).map { Int32($0) }
  return try Perplexity.evaluate(Interpreter(module: m, policy: .keepAll), ids: ids, seqlen: 512, windows: 40)
}

extension RealModelTests {
  /// anchors.md: RTN int4 sym group 128, full-range rule (auto-round 0.15.1 `iters=0`; the last
  /// group of each 576-wide row is 64 wide) — 55.499.
  @Test func realModelRTNInt4Group128MatchesAnchor() throws {
    let r = try quantizedPerplexity("rtn<bits=4;group-size=128>")
    #expect(r.predictedTokens == 20440)
    #expect(abs(r.ppl / 55.499 - 1) < 0.001, "ppl \(r.ppl), anchor 55.499")
  }

  /// anchors.md: NVFP4A16 RTN with fused global scales (llmcompressor 0.14) — 52.413.
  @Test func realModelNVFP4FusedMatchesAnchor() throws {
    let r = try quantizedPerplexity("rtn<scheme=nvfp4>,fuse-scales")
    #expect(r.predictedTokens == 20440)
    #expect(abs(r.ppl / 52.413 - 1) < 0.001, "ppl \(r.ppl), anchor 52.413")
  }
}
