import QoptIR
import QoptRuntime

// `gptq<float-inputs>` over `calibrate`'s data shards: a shard's run writes every selected
// block's Hessian sums over its windows and rounds nothing; a run with `partials=DIR` alone
// reads the N partials, adds them in shard order and solves without forwarding anything.

extension GPTQRun {
  /// `calibrate<…;shard=K;partials=DIR>`: forwards shard K's windows through the float blocks
  /// and saves, per selected block, each input's Hessian sums (`GPTQHessianPartial`).
  func writeShard(
    _ model: ModelBlocks, _ paramByName: [String: Op], _ calib: CalibrationData
  ) throws {
    let k = calib.shard
    let windows = calib.shards.range(k)
    var x = try calib.blockInputs.copy(windows)
    let total = model.blocks.count
    let phase = Progress.shared.phase("gptq: shard \(k) Hessians, block", total: total)
    defer { phase.close() }
    var files = 0
    // No block after the last one with a selected linear needs its inputs.
    let last = model.blocks.lastIndex { !$0.linearWeights(in: paramByName).isEmpty } ?? -1
    for (bi, f) in model.blocks.enumerated() where bi <= last {
      let exec = try BlockExecutor(function: f, module: module)
      let names = f.linearWeights(in: paramByName).map(\.0)
      if !names.isEmpty {
        phase.step(bi, "Hessians")
        let (sums, owner) = try collectHessians(exec, f, names, x: x, ends: [])
        // An input this shard never reached (a MoE expert) is saved empty, so the merge can
        // tell it from a missing file.
        for input in Set(owner.values).sorted() {
          guard let cols = module.weights[input]?.shape.last else { continue }
          let h =
            sums[input]
            ?? GPTQHessian(columns: cols, tokensPerWindow: x.tokens, sinkWeight: options.sinkWeight)
          try GPTQHessianPartial.save(
            h, partialKey(calib, shard: k, block: bi, input), dir: calib.partials)
          files += 1
        }
      }
      if bi < last {
        phase.step(bi, "propagating")
        let next = ActivationStore(tokens: x.tokens, width: x.width, budget: calib.memoryBudget)
        try exec.forward(all: x, batch: options.batchSize, into: next)
        x = next
      }
    }
    context.remark(
      "wrote the partial Hessians of shard \(k) (windows \(windows.lowerBound)..<\(windows.upperBound)), \(files) inputs, to \(GPTQHessianPartial.directory(calib.partials, k, of: calib.shards.count)); rounded nothing (partials=\(calib.partials) without shard adds the shards and solves)"
    )
  }

  /// The Hessian sums of the inputs `names` read in block `block`, from the N partials under
  /// `calib.partials`, added in shard order.
  func readHessians(
    _ f: Function, _ names: [String], block: Int, _ calib: CalibrationData
  ) throws -> (hessians: [String: GPTQHessian], owner: [String: String]) {
    let owner = inputOwners(f, names)
    let tokens = calib.blockInputs.tokens
    var parts: [[String: GPTQHessian]] = []
    for k in 0..<calib.shards.count {
      var part: [String: GPTQHessian] = [:]
      for input in Set(owner.values).sorted() {
        let h = try GPTQHessianPartial.load(
          partialKey(calib, shard: k, block: block, input), dir: calib.partials,
          tokensPerWindow: tokens)
        if let cols = module.weights[input]?.shape.last, cols != h.columns {
          throw StorageError(
            file: GPTQHessianPartial.path(
              calib.partials, partialKey(calib, shard: k, block: block, input)),
            offset: 0, message: "holds a Hessian of \(h.columns) columns; \(input) has \(cols)")
        }
        if h.counts.rows > 0 { part[input] = h }
      }
      parts.append(part)
    }
    return (GPTQHessianPartial.add(parts), owner)
  }

  private func partialKey(
    _ calib: CalibrationData, shard: Int, block: Int, _ input: String
  ) -> GPTQHessianPartial.Key {
    GPTQHessianPartial.Key(
      data: calib.fingerprint, shards: calib.shards.count, shard: shard, block: block,
      input: input, sinkWeight: options.sinkWeight, batch: options.batchSize)
  }
}

extension GPTQHessianPartial {
  /// Adds per-shard sums (in shard order) into one; an input missing from a shard adds nothing.
  package static func add(_ parts: [[String: GPTQHessian]]) -> [String: GPTQHessian] {
    var total = parts.first ?? [:]
    for part in parts.dropFirst() {
      for (input, h) in part {
        if total[input] == nil {
          total[input] = h
        } else {
          total[input]?.add(h)
        }
      }
    }
    return total
  }
}
