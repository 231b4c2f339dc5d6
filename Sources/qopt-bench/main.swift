import QoptFrontends
import QoptIR
#if canImport(Glibc)
import Glibc
#endif

func now() -> Double { var t = timespec(); clock_gettime(CLOCK_MONOTONIC, &t); return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9 }
let t0 = now()
let m = try GGUFImporter.importModel(path: "../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf")
print("import", now() - t0)
let tok = try Tokenizer(module: m)
print("tok load", now() - t0)
for name in ["dev_eval", "calib"] {
  let text = String(decoding: try readFile("../shared/data/\(name).txt"), as: UTF8.self)
  let t1 = now()
  let ids = tok.encode(text)
  print(name, ids.count, now() - t1)
  let ref = try JSON.parse(try readFile("../shared/data/\(name).tokens.json"))
  let refIds = (ref.arrayValue ?? ref["ids"]?.arrayValue ?? ref["input_ids"]?.arrayValue ?? []).compactMap(\.intValue)
  print("ref", refIds.count)
  if let i = zip(ids, refIds).enumerated().first(where: { Int($0.1.0) != $0.1.1 })?.offset {
    print("first diff at", i, Array(ids[max(0,i-5)..<min(ids.count,i+5)]), Array(refIds[max(0,i-5)..<min(refIds.count,i+5)]))
  } else { print("equal prefix", ids.count == refIds.count) }
}
print(m.text.prefix(3000))
