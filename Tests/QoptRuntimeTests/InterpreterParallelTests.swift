import QoptIR
import QoptRuntime
import QoptTestSupport
import Testing

/// The interpreter's threaded element-wise ops, its fused SwiGLU product and the vocabulary-
/// chunked lm_head give the same numbers as one thread and separate ops.
@Suite struct InterpreterParallelTests {
  /// Large enough that norms, activations and products cross the threading threshold.
  private static let config: ExampleModel.Config = {
    var c = ExampleModel.Config()
    (c.hidden, c.headDim, c.ffn) = (128, 32, 384)
    return c
  }()
  private let ids: [Int32] = (0..<300).map { Int32(($0 * 37 + 11) % 256) }

  /// Two workers with silu·mul fused equal one worker with every op separate (an observer
  /// turns the fusion off), bit for bit.
  @Test func threadsAndFusionDoNotChangeLogits() throws {
    let m = ExampleModel.make(Self.config)
    let serial = Interpreter(module: m)
    serial.attentionWorkers = 1
    var silus = 0
    serial.observer = { op, _ in if op.kind == .silu { silus += 1 } }
    let a = try serial.run(ids: ids)
    #expect(silus == Self.config.blocks)
    let parallel = Interpreter(module: m)
    parallel.attentionWorkers = 2
    parallel.profile = [:]
    let b = try parallel.run(ids: ids)
    #expect(parallel.profile?["silu·mul"] != nil)
    #expect(parallel.profile?["silu"] == nil)
    #expect(a.data == b.data)
  }

  /// The chunked head's NLL does not depend on the chunk width or the worker count, and
  /// equals log-softmax over the full logits.
  @Test func chunkedHeadNLLMatchesFullLogits() throws {
    let m = ExampleModel.make(Self.config)
    let interp = Interpreter(module: m)
    let logits = try interp.run(ids: ids)
    let v = 256
    var ref = 0.0
    for t in 0..<(ids.count - 1) {
      let row = logits.data[(t * v)..<((t + 1) * v)].map(Double.init)
      let mx = row.max()!
      ref += mx + log(row.reduce(0) { $0 + exp($1 - mx) }) - row[Int(ids[t + 1])]
    }
    interp.attentionWorkers = 1
    let one = try Perplexity.windowNLL(interp, ids)
    interp.attentionWorkers = 2
    let two = try Perplexity.windowNLL(interp, ids)
    let narrow = try Perplexity.windowNLL(interp, ids, chunk: 7)
    #expect(one == two)
    #expect(abs(one - ref) < 1e-6 * abs(ref))
    #expect(abs(narrow - ref) < 1e-6 * abs(ref))
  }

  /// `siluMul` is `silu` then `mul`, bit for bit, including the scalar tail.
  @Test func siluMulEqualsSiluThenMul() {
    let n = 2053
    let g = (0..<n).map { Float(($0 * 7919) % 2001 - 1000) / 97 }
    let u = (0..<n).map { Float(($0 * 104_729) % 1999 - 999) / 131 }
    var s = [Float](repeating: 0, count: n), ref = s, got = s
    Kernels.silu(g, count: n, into: &s)
    Kernels.mul(s, u, count: n, into: &ref)
    Kernels.siluMul(g, u, count: n, into: &got)
    #expect(got == ref)
  }
}

#if canImport(Glibc)
  import Glibc
#endif
