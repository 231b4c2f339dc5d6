import QoptIR
import QoptPasses
import QoptRuntime
import QoptTestSupport
import Testing

/// A window longer than 4096 tokens but within the model's context runs correctly in the
/// block executor: its RoPE tables grow with the window (they were a fixed 4096 positions, so
/// rows past 4096 read memory beyond the table). The interpreter, which sizes its tables from
/// each call, is the reference.
@Test func blockExecutorMatchesInterpreterPast4096Positions() throws {
  let m = ExampleModel.make()
  m.attributes["max_position_embeddings"] = .int(8192)
  let f = try #require(m.function(named: "block.0"))
  let exec = try BlockExecutor(function: f, module: m)
  let d = exec.hiddenWidth
  var rng = SplitMix64(seed: 41)
  // A short window first, so the long one has to grow tables that already exist.
  let short = (0..<(16 * d)).map { _ in Float(rng.normal()) }
  _ = exec.forward(short, samples: 1, tokens: 16)
  let t = 5000
  let x = (0..<(t * d)).map { _ in Float(rng.normal()) }
  let y = Array(UnsafeBufferPointer(start: exec.forward(x, samples: 1, tokens: t), count: t * d))
  guard case .tensor(let ref) = try Interpreter(module: m).call("block.0", [.tensor(Tensor(shape: [t, d], data: x))]) else {
    Issue.record("block.0 did not return a tensor")
    return
  }
  try #require(ref.data.count == y.count)
  var worst = (diff: Float(0), row: 0)
  for i in 0..<y.count where abs(y[i] - ref.data[i]) > worst.diff { worst = (abs(y[i] - ref.data[i]), i / d) }
  #expect(worst.diff < 1e-3, "largest difference \(worst.diff) at row \(worst.row)")
}

/// `calibrate` checks `seqlen` against the module's max_position_embeddings before reading
/// any data: above it is an error naming the limit (unless allow-long-context), within it runs.
@Test func calibrateChecksSeqlenAgainstTheContextLength() throws {
  func run(_ pipeline: String, context: Int) throws {
    let m = ExampleModel.make()
    m.attributes["max_position_embeddings"] = .int(context)
    try PassManager(threads: 1) { _ in }.run(PipelineParser.parse(pipeline, registry: .builtin()), on: m)
  }
  #expect {
    try run("calibrate<data=/nonexistent/never-read.txt;seqlen=2049>", context: 2048)
  } throws: { e in
    let text = "\(e)"
    return text.contains("seqlen 2049 exceeds the model's context length (max_position_embeddings = 2048)")
      && text.contains("allow-long-context")
  }
  try run("calibrate<samples=1;seqlen=2048;no-stats>", context: 2048)
  try run("calibrate<samples=1;seqlen=2049;no-stats;allow-long-context>", context: 2048)
}
