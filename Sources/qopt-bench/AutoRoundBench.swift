import QoptFrontends
import QoptIR
import QoptPasses
import QoptRuntime

#if canImport(Glibc)
  import Glibc
#endif

/// `qopt-bench autoround`: seconds per block of the AutoRound configuration of the acceptance
/// run (W4 g128 sym, 32×512 calibration windows from calib_samples_32x512.json, batch 8,
/// 50 iterations) on the first blocks of the shared SmolLM2-135M GGUF, next to the GFLOP/s
/// `cblas_sgemm` reaches on the same shapes in the same process, and the peak RSS.
///
/// "useful GFLOP" per iteration counts the linears (forward, weight gradients, input gradients
/// where needed) and causal attention (forward + backward, the lower triangle only).
/// Environment: `QOPT_BENCH_THREADS` (2), `QOPT_BENCH_BLOCKS` (2), `QOPT_BENCH_ITERS` (50).
@Sendable func runAutoRoundBench() {
  let env = { (k: String, d: Int) -> Int in getenv(k).flatMap { Int(String(cString: $0)) } ?? d }
  do {
    try autoRoundBench(threads: env("QOPT_BENCH_THREADS", 2), blocks: env("QOPT_BENCH_BLOCKS", 2), iters: env("QOPT_BENCH_ITERS", 50))
  } catch {
    print("autoround benchmark failed: \(error)")
  }
}

func autoRoundBench(
  model: String = "../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf",
  samplesFile: String = "../shared/data/calib_samples_32x512.json", threads: Int, blocks: Int, iters: Int
) throws {
  BLAS.setThreads(threads)
  let module = try GGUFImporter.importModel(path: model)
  guard let c = LlamaConfig(attributes: module.attributes) else { throw RuntimeError("model has no llama config attributes") }
  let windows = try JSON.parse(readFile(samplesFile)).arrayValue?.compactMap { $0.arrayValue?.compactMap { $0.intValue.map(Int32.init) } } ?? []
  guard let t = windows.first?.count, !windows.isEmpty else { throw RuntimeError("\(samplesFile): no windows") }
  let n = windows.count, d = c.hiddenSize, f = c.intermediateSize
  let qd = c.numAttentionHeads * c.headDim, kvd = c.numKeyValueHeads * c.headDim

  // Block-0 inputs: embedding rows.
  guard case .dense(let emb)? = module.weights["model.embed_tokens.weight"] else { throw RuntimeError("no embedding table") }
  let table = emb.floats()
  var x = [Float](repeating: 0, count: n * t * d)
  for (i, w) in windows.enumerated() {
    for (p, id) in w.enumerated() { for j in 0..<d { x[(i * t + p) * d + j] = table[Int(id) * d + j] } }
  }

  // sgemm reference on this iteration's linear shapes (rows = batch · seqlen).
  let batch = 8, rows = batch * t
  let lin: [(n: Int, k: Int)] = [(qd, d), (kvd, d), (kvd, d), (d, qd), (f, d), (f, d), (d, f)]
  let linParams = Double(lin.reduce(0) { $0 + $1.n * $1.k })
  let qkvParams = Double(lin.prefix(3).reduce(0) { $0 + $1.n * $1.k })
  let linearFlops = 2 * Double(rows) * (3 * linParams - qkvParams)
  let attentionFlops = 6 * Double(t * t) * Double(c.headDim) * Double(c.numAttentionHeads * batch)
  let iterFlops = linearFlops + attentionFlops
  let maxA = rows * f, maxB = f * d, maxC = rows * f
  let a = [Float](repeating: 0.01, count: maxA), b = [Float](repeating: 0.02, count: maxB)
  var cbuf = [Float](repeating: 0, count: maxC)
  func sgemmRate() -> Double {
    let s = monotonicSeconds()
    a.withUnsafeBufferPointer { ap in
      b.withUnsafeBufferPointer { bp in
        cbuf.withUnsafeMutableBufferPointer { cp in
          for sh in lin {
            // safe: buffers sized for the largest shape.
            BLAS.sgemm(transB: true, m: rows, n: sh.n, k: sh.k, a: ap.baseAddress!, lda: sh.k, b: bp.baseAddress!, ldb: sh.k, c: cp.baseAddress!, ldc: sh.n)
          }
        }
      }
    }
    return 2 * Double(rows) * linParams / (monotonicSeconds() - s) / 1e9
  }
  _ = sgemmRate()
  var sgemmBest = (0..<3).map { _ in sgemmRate() }.max() ?? 1

  var options = AutoRoundOptions()
  options.iters = iters
  let run = AutoRoundRun(module: module, options: options)
  var table2: [[String]] = []
  var perBlock: [Double] = []
  var profile: [String: Double] = [:]
  for bi in 0..<min(blocks, c.numHiddenLayers) {
    guard let fn = module.function(named: "block.\(bi)") else { break }
    let exec = try BlockExecutor(function: fn, module: module)
    let xs = ActivationStore.from(x, tokens: t, width: d)
    let ys = ActivationStore(tokens: t, width: d, budgetBytes: .max)
    try run.forwardAll(exec, xs, into: ys)
    var linears: [SignRoundLinear] = []
    for op in fn.body where op.kind == .linear {
      guard let name = op.operands[1].definingOp?.paramName, let w = module.weights.dense(name) else { continue }
      linears.append(SignRoundLinear(name: name, weights: w.floats(), rows: w.shape[0], cols: w.shape[1], scheme: options.scheme(columns: w.shape[1])))
    }
    exec.trainable = Set(linears.map(\.name))
    exec.profile = [:]
    let t0 = monotonicSeconds()
    let report = try run.tune(exec, linears, x: xs, y: ys, block: bi)
    let secs = monotonicSeconds() - t0
    for (k, v) in exec.profile ?? [:] { profile[k, default: 0] += v }
    profile["(total)", default: 0] += secs
    perBlock.append(secs)
    let achieved = iterFlops * Double(iters) / secs / 1e9
    table2.append([
      "\(bi)", fmt(secs, 1), fmt(secs / Double(iters), 2), fmt(achieved, 1), fmt(report.firstLoss * 1e3, 4), fmt(report.bestLoss * 1e3, 4),
    ])
    x = try ys.all()
  }
  sgemmBest = max(sgemmBest, (0..<3).map { _ in sgemmRate() }.max() ?? 1)
  let mean = perBlock.reduce(0, +) / Double(max(1, perBlock.count))
  printTable(
    "autoround: SmolLM2-135M blocks, W4 g128 sym, \(n)×\(t) calibration, batch \(batch), \(iters) iterations, \(threads) threads",
    ["block", "s/block (\(iters) iters)", "s/iter", "useful GFLOP/s", "first loss ×1e3", "best loss ×1e3"], table2)
  printTable(
    "autoround summary", ["measure", "value"],
    [
      ["seconds per block (mean of \(perBlock.count))", fmt(mean, 1)],
      ["auto-round 0.15.1 reference (anchors.md, quiet machine)", "37 s/block"],
      ["useful GFLOP per iteration (linears \(fmt(linearFlops / 1e9, 1)) + attention \(fmt(attentionFlops / 1e9, 1)))", fmt(iterFlops / 1e9, 1)],
      ["achieved GFLOP/s", fmt(iterFlops * Double(iters) / mean / 1e9, 1)],
      ["sgemm GFLOP/s on the same linear shapes (best, same run)", fmt(sgemmBest, 1)],
      ["achieved / sgemm", fmt(100 * iterFlops * Double(iters) / mean / 1e9 / sgemmBest, 1) + " %"],
      ["sgemm-bound seconds per block", fmt(iterFlops * Double(iters) / sgemmBest / 1e9, 1)],
      ["peak RSS MiB", fmt(peakRSSMegabytes(), 0)],
    ])
  let total = profile["(total)"] ?? 1
  let accounted = profile.filter { $0.key != "(total)" }.values.reduce(0, +)
  profile["(total)"] = nil
  profile["other (batch copies, loss, bookkeeping)"] = total - accounted
  let itersDone = Double(iters * perBlock.count)
  printTable(
    "autoround: where the time goes (all blocks, per iteration)", ["step", "ms/iter", "share"],
    profile.sorted { $0.value > $1.value }.map { [$0.key, fmt(1000 * $0.value / itersDone, 1), fmt(100 * $0.value / total, 1) + " %"] })
}
