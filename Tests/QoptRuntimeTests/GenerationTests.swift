import QoptIR
import QoptRuntime
import QoptTestSupport
import Testing

/// Greedy decoding picks, at each step, the arg-max of the full model's logits at the last
/// position of the sequence so far.
@Suite struct GenerationTests {
  @Test func greedyFollowsTheFullLogits() throws {
    let m = ExampleModel.make()
    let interp = Interpreter(module: m)
    let prompt: [Int32] = [3, 17, 200, 5]
    var seen: [Int32] = []
    let out = try Generation.greedy(interp, prompt: prompt, count: 5) { seen.append($0) }
    #expect(out.count == 5)
    #expect(seen == out)
    var ids = prompt
    for tok in out {
      let logits = try interp.run(ids: ids)
      let v = logits.columns
      let last = Array(logits.data[((ids.count - 1) * v)..<(ids.count * v)])
      let best = last.indices.max { last[$0] < last[$1] || (last[$0] == last[$1] && $0 > $1) }!
      #expect(Int(tok) == best)
      ids.append(tok)
    }
  }

  @Test func anEmptyPromptIsAnError() {
    #expect(throws: RuntimeError.self) { try Generation.greedy(Interpreter(module: ExampleModel.make()), prompt: [], count: 1) }
  }
}
