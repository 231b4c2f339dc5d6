import QoptFormats
import QoptFrontends
import QoptIR
import QoptRuntime
import Testing

// The families beyond Llama against Hugging Face transformers itself: each fixture in
// ../shared/data/arch/<family>/ (tiny random checkpoints saved by transformers 5.17, see its
// README) carries the float32 logits transformers computes for two fixed sequences, and for
// MoE models the top-k experts of every token in every layer. qopt imports the directory, runs
// `@main` in the interpreter and must agree within 1e-4 (logits) and exactly (routing).

/// ../shared/data/arch beside the checkout.
let archFixtures: String = {
  let file = "\(#filePath)"
  let root = file.split(separator: "/", omittingEmptySubsequences: false).dropLast(3).joined(
    separator: "/")
  return root + "/../shared/data/arch"
}()

/// One fixture's reference: input ids `[seq][pos]`, logits `[seq][pos][vocab]`, and for MoE
/// `routed[layer][seq][pos]` = the expert ids in descending weight.
struct ArchReference {
  var ids: [[Int32]]
  var logits: [[[Float]]]
  var routed: [[[[Int]]]]?

  init(family: String) throws {
    let path = archFixtures + "/\(family)/reference.json"
    try #require(
      fileExists(path), "missing \(path): the architecture tests need ../shared beside the checkout"
    )
    let j = try JSON.parse(try readFile(path))
    ids = try #require(j["input_ids"]?.arrayValue).map {
      $0.arrayValue?.compactMap { $0.intValue.map(Int32.init) } ?? []
    }
    logits = try #require(j["logits"]?.arrayValue).map { seq in
      (seq.arrayValue ?? []).map { row in
        (row.arrayValue ?? []).map { Float($0.doubleValue ?? .nan) }
      }
    }
    routed = j["routed_experts"]?.arrayValue?.map { layer in
      (layer.arrayValue ?? []).map { seq in
        (seq.arrayValue ?? []).map { pos in (pos.arrayValue ?? []).compactMap(\.intValue) }
      }
    }
  }
}

/// Experts of each row of a `[T, E]` route, by descending weight.
func routedExperts(_ route: Tensor) -> [[Int]] {
  (0..<route.rows).map { t in
    let row = Array(route.data[(t * route.columns)..<((t + 1) * route.columns)])
    return row.indices.filter { row[$0] != 0 }.sorted {
      row[$0] > row[$1] || (row[$0] == row[$1] && $0 < $1)
    }
  }
}

@Suite(.serialized) struct ArchitectureLogitsTests {
  static let families = ["llama3", "qwen3", "phi3", "gemma3_text", "qwen3_moe", "mixtral"]

  @Test(arguments: families) func logitsMatchTransformers(_ family: String) throws {
    let ref = try ArchReference(family: family)
    let module = try ModelImporter.load(path: archFixtures + "/" + family)
    try module.verify()
    let interp = Interpreter(module: module)
    var routes: [Tensor] = []
    interp.observer = { op, value in
      if op.kind == .moeRoute, case .tensor(let t) = value { routes.append(t) }
    }
    var worst: Float = 0
    for (s, ids) in ref.ids.enumerated() {
      routes.removeAll()
      let logits = try interp.run(ids: ids)
      #expect(logits.shape == [ids.count, ref.logits[s][0].count])
      for (p, row) in ref.logits[s].enumerated() {
        for (v, expected) in row.enumerated() {
          worst = max(worst, abs(logits.data[p * logits.columns + v] - expected))
        }
      }
      if let routed = ref.routed {
        #expect(routes.count == routed.count, "one route per MoE layer")
        for (layer, route) in routes.enumerated() where layer < routed.count {
          #expect(
            routedExperts(route) == routed[layer][s],
            "\(family) layer \(layer) sequence \(s) routing")
        }
      }
    }
    #expect(worst <= 1e-4, "\(family): max |qopt − transformers| = \(worst)")
  }
}
