import QoptFrontends
import QoptIR
import QoptRuntime

let t0 = monotonicSeconds()
BLAS.setThreads(2)
let m = try GGUFImporter.importModel(path: "../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf")
print("import", monotonicSeconds() - t0, "rss", peakRSSMegabytes())
try m.verify()
let interp = Interpreter(module: m)
let logits = try interp.run(ids: [504, 3575, 282, 4649, 314])
let V = logits.columns
for p in [0, 4] {
  let row = Array(logits.data[(p * V)..<((p + 1) * V)])
  let top = row.indices.sorted { row[$0] > row[$1] }.prefix(5)
  print(p, Array(top), top.map { row[$0] }, Array(row[0..<5]))
}
let tok = try Tokenizer(module: m)
let text = String(decoding: try readFile("../shared/data/dev_eval.txt"), as: UTF8.self)
let ids = tok.encode(text)
let r = try Perplexity.evaluate(interp, ids: ids, seqlen: 512, windows: Int(CommandLine.arguments.dropFirst().first ?? "4") ?? 4)
print("ppl", r.ppl, "tok/s", r.tokensPerSecond, "rss", peakRSSMegabytes())
