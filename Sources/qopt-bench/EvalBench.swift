import QoptFormats
import QoptFrontends
import QoptIR
import QoptRuntime

#if canImport(Glibc)
  import Glibc
#endif

/// `qopt-bench eval`: perplexity-protocol throughput (40×512 windows of dev_eval.txt on the
/// shared SmolLM2-135M GGUF) next to the GFLOP/s `cblas_sgemm` reaches on the same matrix
/// shapes in the same process, so the figure is comparable on a busy machine.
///
/// The "sgemm bound" is the tokens/s the model's linears and lm_head alone would allow at the
/// measured sgemm rate; eval/bound says how much the rest (attention, norms, glue) costs.
/// Environment: `QOPT_BENCH_THREADS` (default 2), `QOPT_BENCH_WINDOWS` (default 40),
/// `QOPT_BENCH_MODEL` (another model: a float checkpoint directory is what `qopt eval` reads
/// in place; the default GGUF is dequantized on each use).
@Sendable func runEvalBench() {
  let env = { (k: String, d: Int) -> Int in getenv(k).flatMap { Int(String(cString: $0)) } ?? d }
  do {
    let model = getenv("QOPT_BENCH_MODEL").map { String(cString: $0) }
    try evalBench(
      model: model ?? "../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf",
      threads: env("QOPT_BENCH_THREADS", 2), windows: env("QOPT_BENCH_WINDOWS", 40))
  } catch {
    print("eval benchmark failed: \(error)")
  }
}

func evalBench(
  model: String,
  data: String = "../shared/data/dev_eval.txt", threads: Int, windows: Int, seqlen: Int = 512
) throws {
  BLAS.setThreads(threads)
  let module = try ModelImporter.load(path: model)
  guard let c = LlamaConfig(attributes: module.attributes) else {
    throw RuntimeError("model has no llama config attributes")
  }
  let tokenizer = try Tokenizer(module: module)
  let ids = tokenizer.encode(String(decoding: try readFile(data), as: UTF8.self))

  // sgemm on the model's shapes: one window's linears (all blocks) plus the chunked lm_head.
  let t = seqlen, d = c.hiddenSize, f = c.intermediateSize
  let qd = c.numAttentionHeads * c.headDim, kvd = c.numKeyValueHeads * c.headDim
  var shapes: [(m: Int, n: Int, k: Int)] = []
  for _ in 0..<c.numHiddenLayers {
    shapes += [(t, qd, d), (t, kvd, d), (t, kvd, d), (t, d, qd), (t, f, d), (t, f, d), (t, d, f)]
  }
  var c0 = 0
  while c0 < c.vocabSize {  // the head in vocabulary chunks, as Perplexity.windowNLL runs it
    shapes.append((t - 1, min(4096, c.vocabSize - c0), d))
    c0 += 4096
  }
  let flopsPerWindow = shapes.reduce(0.0) { $0 + 2 * Double($1.m * $1.n * $1.k) }
  let maxA = shapes.map { $0.m * $0.k }.max() ?? 1
  let maxB = shapes.map { $0.n * $0.k }.max() ?? 1
  let maxC = shapes.map { $0.m * $0.n }.max() ?? 1
  let a = [Float](repeating: 0.01, count: maxA), b = [Float](repeating: 0.02, count: maxB)
  var cbuf = [Float](repeating: 0, count: maxC)
  func sgemmPass() -> Double {
    let s = monotonicSeconds()
    a.withUnsafeBufferPointer { ap in
      b.withUnsafeBufferPointer { bp in
        cbuf.withUnsafeMutableBufferPointer { cp in
          for sh in shapes {
            // safe: buffers sized for the largest shape.
            BLAS.sgemm(
              transB: true, m: sh.m, n: sh.n, k: sh.k, a: ap.baseAddress!, lda: sh.k,
              b: bp.baseAddress!, ldb: sh.k, c: cp.baseAddress!, ldc: sh.n)
          }
        }
      }
    }
    return monotonicSeconds() - s
  }
  // Windows and sgemm passes alternate, so both see the same machine load.
  _ = sgemmPass()
  let interpreter = Interpreter(module: module)
  interpreter.profile = [:]
  if let w = getenv("QOPT_BENCH_ATTENTION_WORKERS").flatMap({ Int(String(cString: $0)) }) {
    interpreter.attentionWorkers = w
  }
  let n = min(windows, ids.count / seqlen)
  var evalSeconds = 0.0, sgemmSeconds = 0.0, nll = 0.0
  for w in 0..<n {
    let window = Array(ids[(w * seqlen)..<((w + 1) * seqlen)])
    let s = monotonicSeconds()
    nll += try Perplexity.windowNLL(interpreter, window)
    evalSeconds += monotonicSeconds() - s
    sgemmSeconds += sgemmPass()
  }
  let ppl = exp(nll / Double(n * (seqlen - 1)))
  let tokensPerSecond = Double(n * seqlen) / evalSeconds
  let gflops = flopsPerWindow * Double(n) / sgemmSeconds / 1e9
  let bound = Double(n * seqlen) / sgemmSeconds
  let result = (ppl: ppl, tokensPerSecond: tokensPerSecond, windows: n, seqlen: seqlen)

  printTable(
    "eval: \(result.windows)×\(result.seqlen) windows of dev_eval.txt, \(model), \(threads) threads",
    ["measure", "value"],
    [
      ["perplexity", fmt(result.ppl, 3)],
      ["eval tokens/s", fmt(result.tokensPerSecond, 1)],
      [
        "sgemm GFLOP/s on the model's linear shapes (interleaved with the windows)", fmt(gflops, 1),
      ],
      ["linear + lm_head GFLOP per window", fmt(flopsPerWindow / 1e9, 1)],
      ["sgemm-bound tokens/s (linears + lm_head only)", fmt(bound, 1)],
      ["eval / sgemm bound", fmt(100 * result.tokensPerSecond / bound, 1) + " %"],
      ["peak RSS MiB (includes the benchmark's sgemm buffers)", fmt(peakRSSMegabytes(), 0)],
    ])
  var prof = interpreter.profile ?? [:]
  prof["other (glue between ops, allocation)"] = max(0, evalSeconds - prof.values.reduce(0, +))
  let total = prof.values.reduce(0, +)
  printTable(
    "eval: where the time goes (per op, all windows)", ["op", "seconds", "share"],
    prof.sorted { $0.value > $1.value }.map {
      [$0.key, fmt($0.value, 2), fmt(100 * $0.value / total, 1) + " %"]
    })
}
