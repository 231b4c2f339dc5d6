import QoptIR
import QoptRuntime
import QoptTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// `KLDivergence` (what `qopt eval -kl-base` reports) against a direct computation over the
/// full logits of both models.
@Suite struct KLDivergenceTests {
  private let ids: [Int32] = [3, 17, 200, 5, 99, 42, 7, 250, 11, 64, 128, 1, 33, 90]

  /// A model against itself: KL 0, top-1 agreement 1, its own perplexity on both sides.
  @Test func modelAgainstItselfIsZero() throws {
    let m = ExampleModel.make()
    let r = try KLDivergence.evaluate(
      Interpreter(module: m), base: Interpreter(module: m), ids: ids, seqlen: 7, windows: 2)
    #expect(r.maxKL < 1e-9)
    #expect(r.top1Agreement == 1)
    #expect(r.predictedTokens == 12)
    let ppl = try Perplexity.evaluate(Interpreter(module: m), ids: ids, seqlen: 7, windows: 2)
    #expect(abs(r.ppl - ppl.ppl) < 1e-6 * ppl.ppl)
    #expect(abs(r.basePPL - ppl.ppl) < 1e-6 * ppl.ppl)
  }

  /// A perturbed copy: mean/max KL, top-1 agreement and both perplexities equal the formula
  /// applied to the two models' full logits in f64.
  @Test func perturbedCopyMatchesDirectComputation() throws {
    let base = ExampleModel.make()
    let model = ExampleModel.make()
    var rng = SplitMix64(seed: 7)
    for name in model.weights.names where name.hasSuffix("proj.weight") {
      let d = model.weights.dense(name)!
      let noisy = d.floats().map { $0 + Float(0.2 * rng.normal()) / 8 }
      model.weights.set(name, .dense(TensorData(floats: noisy, shape: d.shape)))
    }
    let seqlen = 7
    let v = 256
    var kls: [Double] = []
    var same = 0
    var (nll, baseNLL) = (0.0, 0.0)
    for w in 0..<2 {
      let window = Array(ids[(w * seqlen)..<((w + 1) * seqlen)])
      let b = try Interpreter(module: base).run(ids: window).data.map(Double.init)
      let m = try Interpreter(module: model).run(ids: window).data.map(Double.init)
      for t in 0..<(seqlen - 1) {
        let br = Array(b[(t * v)..<((t + 1) * v)])
        let mr = Array(m[(t * v)..<((t + 1) * v)])
        func logSoftmax(_ x: [Double]) -> [Double] {
          let mx = x.max()!
          let lse = mx + log(x.reduce(0) { $0 + exp($1 - mx) })
          return x.map { $0 - lse }
        }
        let pb = logSoftmax(br)
        let pm = logSoftmax(mr)
        kls.append(zip(pb, pm).reduce(0) { $0 + exp($1.0) * ($1.0 - $1.1) })
        if br.firstIndex(of: br.max()!) == mr.firstIndex(of: mr.max()!) { same += 1 }
        nll -= pm[Int(window[t + 1])]
        baseNLL -= pb[Int(window[t + 1])]
      }
    }
    let r = try KLDivergence.evaluate(
      Interpreter(module: model), base: Interpreter(module: base), ids: ids, seqlen: seqlen,
      windows: 2)
    let mean = kls.reduce(0, +) / Double(kls.count)
    #expect(mean > 1e-4)
    #expect(abs(r.meanKL - mean) < 1e-4 * mean + 1e-7)
    #expect(abs(r.maxKL - kls.max()!) < 1e-4 * kls.max()! + 1e-7)
    #expect(r.top1Agreement == Double(same) / Double(kls.count))
    #expect(abs(log(r.ppl) - nll / 12) < 1e-4)
    #expect(abs(log(r.basePPL) - baseNLL / 12) < 1e-4)
  }

  /// Two models whose heads differ in shape are refused with a message, not a crash.
  @Test func mismatchedVocabIsAnError() throws {
    var c = ExampleModel.Config()
    c.vocab = 300
    let other = ExampleModel.make(c)
    #expect(throws: RuntimeError.self) {
      _ = try KLDivergence.evaluate(
        Interpreter(module: ExampleModel.make()), base: Interpreter(module: other),
        ids: ids, seqlen: 7, windows: 1)
    }
  }
}
