import QoptIR
import QoptPasses
import QoptRuntime
import QoptTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
  import Glibc
#endif

// `finetune` as a pass: determinism, checkpoints and resume, refusal of foreign checkpoints,
// that training lowers the loss it reports, and that the best validation step is the result.

private func run(
  _ pipeline: String, onSaved: @escaping @Sendable (BlockCheckpointProgress) -> Void = { _ in }
) throws -> Module {
  let m = ExampleModel.make()
  var pm = PassManager(threads: 1) { _ in }
  pm.checkpoints = BlockCheckpoints(root: nil, onSaved: onSaved)
  try pm.run(PipelineParser.parse(pipeline, registry: .builtin()), on: m)
  return m
}

/// Codes, scales and zero points of every quantized weight, for bit-for-bit comparisons.
private func quantizedBytes(_ m: Module) -> [String: [UInt8]] {
  var out: [String: [UInt8]] = [:]
  for name in m.weights.names {
    guard let q = m.weights.quantized(name) else { continue }
    out[name] = q.codes.bytes + q.scale.bytes + (q.zeroPoint?.bytes ?? [])
  }
  return out
}

private let prefix = "rtn<bits=3;group-size=16>,calibrate<samples=6;seqlen=16>,"

/// Whether two modules hold the same quantized bytes (a Bool, so that a failed expectation
/// does not print the bytes).
private func same(_ a: Module, _ b: Module) -> Bool { quantizedBytes(a) == quantizedBytes(b) }

/// `key=` of a checkpoint's state.txt, and its `val STEP LOSS` lines.
private func checkpointState(_ dir: String) throws -> (fields: [String: String], vals: [Int]) {
  let text = String(decoding: try readFile(dir + "/state.txt"), as: UTF8.self)
  var fields: [String: String] = [:]
  var vals: [Int] = []
  for line in text.split(separator: "\n") {
    if line.hasPrefix("val ") {
      vals.append(Int(line.split(separator: " ")[1])!)  // safe: written by save
    } else if let eq = line.firstIndex(of: "=") {
      fields[String(line[..<eq])] = String(line[line.index(after: eq)...])
    }
  }
  return (fields, vals)
}

/// Interrupted after the step-4 checkpoint (its files copied away as a kill would leave them,
/// with the best validation step, 4, in them) and resumed by the same command ends
/// bit-identical to an uninterrupted run, which returns step 4; checkpointing itself changes
/// nothing; the same options twice give the same bytes.
@Test func finetuneResumeIsBitIdentical() throws {
  try TestTemporary.withDirectory("finetune-resume") { dir in
    let opts =
      "steps=6;batch-size=2;lr=0.001;params=scales+weights;weight-lr=0.001;loss=ce;val-windows=2;eval-every=2"
    let plain = try run(prefix + "finetune<\(opts);checkpoint-every=0>")
    let again = try run(prefix + "finetune<\(opts);checkpoint-every=0>")
    #expect(same(plain, again))
    let rtn = try run("rtn<bits=3;group-size=16>")
    #expect(!same(plain, rtn))

    let (a, b) = (dir + "/a", dir + "/b")
    let checkpointed = try run(
      prefix + "finetune<\(opts);checkpoint-every=2;checkpoint-dir=\(a)>",
      onSaved: { p in
        guard p.done == 4 else { return }
        mkdir(b, 0o755)
        for f in ["params.bin", "state.txt"] {
          let bytes = try! readFile(a + "/" + f)  // safe: just written
          let w = try! AtomicFileWriter(path: b + "/" + f)  // safe: fresh directory
          try! w.write(bytes)
          try! w.commit()
        }
      })
    #expect(same(plain, checkpointed))
    let first = Mutex<Int?>(nil)
    let resumed = try run(
      prefix + "finetune<\(opts);checkpoint-every=2;checkpoint-dir=\(b)>",
      onSaved: { p in first.withLock { if $0 == nil { $0 = p.done } } })
    #expect(first.withLock { $0 } == 4)
    #expect(same(plain, resumed))
    let saved = try checkpointState(a)
    // The best step, 4, was saved with the step-4 checkpoint: the resumed run returned it.
    #expect(saved.vals == [0, 2, 4, 6])
    #expect(saved.fields["best-step"] == "4", "\(saved)")

    // Another option is refused with what changed.
    #expect {
      _ = try run(prefix + "finetune<\(opts);seed=7;checkpoint-every=2;checkpoint-dir=\(b)>")
    } throws: { e in
      "\(e)".contains("was made with a different options") && "\(e)".contains("seed=7")
    }
  }
}

/// Adam on the scales of every block linear lowers the cross-entropy on fixed windows.
@Test func finetuneAdamLowersTheLoss() throws {
  let m = try run("rtn<bits=3;group-size=16>")
  let model = try WholeModel(module: m, trainWeights: false)
  #expect(model.allLinears.count == 14)
  let table = m.weights.dense("model.embed_tokens.weight")!.floats()
  let ids: [[Int32]] = [(0..<16).map { Int32(($0 * 37 + 5) % 256) }]
  let x = ids[0].flatMap { Array(table[(Int($0) * 64)..<((Int($0) + 1) * 64)]) }
  var losses: [Double] = []
  for step in 1...30 {
    model.writeWeights()
    for l in model.allLinears { l.clearGradients() }
    losses.append(
      x.withUnsafeBufferPointer { xp in
        model.lossAndGradients(xp.baseAddress!, samples: 1, tokens: 16) { z, dz in
          FinetuneLoss.ce(logits: z, samples: 1, tokens: 16, vocab: 256, targets: ids, dz: dz)
        }
      })
    for l in model.allLinears { l.adam(t: step, lr: 1e-3, weightLR: 0) }
  }
  #expect(losses.last! < 0.9 * losses.first!, "\(losses)")
}

/// A learning rate so large that every step's validation loss is worse than the input model's:
/// the result is the input model, byte for byte (both `params` modes); without validation the
/// same run returns its last step, which differs.
@Test func finetuneKeepsTheInputModelWhenValidationRises() throws {
  let rtn = try run("rtn<bits=3;group-size=16>")
  for params in ["scales", "scales+weights"] {
    let opts = "steps=4;batch-size=2;lr=1;weight-lr=1;params=\(params);eval-every=1;val-windows=2"
    let kept = try run(prefix + "finetune<\(opts);checkpoint-every=0>")
    #expect(same(kept, rtn), "\(params)")
    let last = try run(prefix + "finetune<\(opts);val-windows=0;checkpoint-every=0>")
    #expect(!same(last, rtn), "\(params)")
  }
}

/// With a constant learning rate the first K steps do not depend on `steps`: a run keeps its
/// best validation step K (read from its checkpoint), which is neither the input nor its last
/// step, and ends with the same bytes as a run of K steps.
@Test func finetuneKeepsTheBestValidationStep() throws {
  try TestTemporary.withDirectory("finetune-best") { dir in
    let opts = "batch-size=1;loss=ce;lr=0.01;schedule=constant;eval-every=1;val-windows=2"
    let long = try run(prefix + "finetune<steps=12;\(opts);checkpoint-dir=\(dir)>")
    let state = try checkpointState(dir)
    let k = try #require(state.fields["best-step"].flatMap(Int.init))
    #expect(state.vals == Array(0...12))
    #expect(k > 0 && k < 12, "best step \(k)")
    let short = try run(prefix + "finetune<steps=\(k);\(opts);checkpoint-every=0>")
    #expect(same(long, short))
    let rtn = try run("rtn<bits=3;group-size=16>")
    #expect(!same(long, rtn))
  }
}

/// The record keeps the strictly lowest loss (ties and NaN keep the earlier step) and the
/// parameters as they were at that step; step 0 keeps none (the input model).
@Test func finetuneBestRecordsTheLowestStep() throws {
  let m = try run("rtn<bits=3;group-size=16>")
  let model = try WholeModel(module: m, trainWeights: false)
  let ls = Array(model.allLinears.prefix(2))
  var best = FinetuneBest()
  var kept: [Bool] = []
  kept.append(best.record(step: 0, loss: 3, linears: ls))
  #expect(best.parameters == nil)
  ls[0].scale[0] = 7
  kept.append(best.record(step: 1, loss: 2, linears: ls))
  ls[0].scale[0] = 8
  kept.append(best.record(step: 2, loss: 2, linears: ls))
  kept.append(best.record(step: 3, loss: .nan, linears: ls))
  kept.append(best.record(step: 4, loss: 2.5, linears: ls))
  #expect(kept == [true, true, false, false, false])
  #expect(best.step == 1 && best.loss == 2)
  #expect(best.parameters?[0][0][0] == 7)
  #expect(best.history.map(\.step) == [0, 1, 2, 3, 4])
}
