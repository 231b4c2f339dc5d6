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
// and that training lowers the loss it reports.

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

private let prefix = "rtn<bits=3;group-size=16>,calibrate<samples=4;seqlen=16>,"

/// Interrupted after the step-4 checkpoint (its files copied away as a kill would leave them)
/// and resumed by the same command ends bit-identical to an uninterrupted run; checkpointing
/// itself changes nothing; the same options twice give the same bytes.
@Test func finetuneResumeIsBitIdentical() throws {
  try TestTemporary.withDirectory("finetune-resume") { dir in
    let opts = "steps=6;batch-size=2;lr=0.001;params=scales+weights;weight-lr=0.001"
    let plain = try run(prefix + "finetune<\(opts);checkpoint-every=0>")
    let again = try run(prefix + "finetune<\(opts);checkpoint-every=0>")
    #expect(quantizedBytes(plain) == quantizedBytes(again))
    let rtn = try run("rtn<bits=3;group-size=16>")
    #expect(quantizedBytes(plain) != quantizedBytes(rtn))

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
    #expect(quantizedBytes(plain) == quantizedBytes(checkpointed))
    let first = Mutex<Int?>(nil)
    let resumed = try run(
      prefix + "finetune<\(opts);checkpoint-every=2;checkpoint-dir=\(b)>",
      onSaved: { p in first.withLock { if $0 == nil { $0 = p.done } } })
    #expect(first.withLock { $0 } == 4)
    #expect(quantizedBytes(plain) == quantizedBytes(resumed))

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
