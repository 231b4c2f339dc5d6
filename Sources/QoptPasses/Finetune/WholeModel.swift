import QoptIR
import QoptRuntime

/// The quantized model end to end for `finetune`: one `BlockExecutor` per decoder block, one
/// for the tail of `@main` (final norm and head, frozen), and the trainable state of every
/// integer-quantized linear in the blocks. `lossAndGradients` runs the forward, the loss on
/// the logits and the backward through the head and every block to each trainable
/// parameter's gradient.
///
/// Activation checkpointing: the forward keeps only each block's input rows; on the backward
/// each block is run forward again from its input (its intermediates live only while its
/// gradient is computed) and its activations are freed after. Peak memory: the executors'
/// f32 weights (the whole model once), `blocks + 1` inputs of `samples · tokens × hidden`
/// floats, the logits and their gradient (`samples · tokens × vocab` floats each, in the tail's
/// buffers), and one block's intermediates and gradients.
package final class WholeModel {
  let module: Module
  package let blocks: [BlockExecutor]
  package let tail: BlockExecutor
  /// Trainable linears of each block, in op order.
  package let linears: [[TrainableQuantLinear]]
  /// Quantized weights that do not train (other schemes, embeddings, the head), with the
  /// executor holding them.
  private var frozenQuantized: [(String, BlockExecutor)] = []
  package let hidden: Int
  package let vocab: Int
  /// Threads for the per-weight loops of the trainable linears (the GEMMs use BLAS's).
  package var threads = 1

  /// `selected`: whether a quantized integer linear weight trains (the others stay frozen).
  package init(
    module: Module, trainWeights: Bool, selected: (String) -> Bool = { _ in true }
  )
    throws
  {
    self.module = module
    let model = try ModelBlocks(module: module, pass: "finetune")
    guard let main = module.function(named: "main"),
      let lastCall = main.body.lastIndex(where: { $0.kind == .call }),
      let input = main.body[lastCall].result
    else { throw PassError("@main calls no block function") }
    // The tail: the ops after the last call, with the params they read wherever they stand.
    let after = Array(main.body[(lastCall + 1)...])
    var used = Set<ObjectIdentifier>()
    for op in after { for v in op.operands { used.insert(ObjectIdentifier(v)) } }
    let params = main.body[..<lastCall].filter {
      $0.kind == .param && $0.result.map { used.contains(ObjectIdentifier($0)) } ?? false
    }
    blocks = try model.blocks.map { try BlockExecutor(function: $0, module: module) }
    tail = try BlockExecutor(input: input, body: params + after, module: module)
    tail.computesInputGradient = true
    hidden = tail.hiddenWidth
    vocab = tail.outputWidth
    var ls: [[TrainableQuantLinear]] = []
    for (f, exec) in zip(model.blocks, blocks) {
      var mine: [TrainableQuantLinear] = []
      for op in f.body where op.kind == .linear {
        guard let name = op.operands[1].definingOp?.paramName,
          let q = module.weights.quantized(name)
        else { continue }
        if case .int = q.scheme, selected(name), !mine.contains(where: { $0.name == name }) {
          mine.append(try TrainableQuantLinear(name: name, q, trainWeights: trainWeights))
        } else {
          frozenQuantized.append((name, exec))
        }
      }
      exec.trainable = Set(mine.map(\.name))
      ls.append(mine)
    }
    for name in tail.linearWeightNames where module.weights.quantized(name) != nil {
      frozenQuantized.append((name, tail))
    }
    linears = ls
  }

  package var allLinears: [TrainableQuantLinear] { linears.flatMap { $0 } }

  /// Writes every trainable weight's `ŵ` into its block's executor.
  package func writeWeights() {
    for (exec, ls) in zip(blocks, linears) {
      // safe: the executor loaded it
      for l in ls { l.qdq(into: exec.weightPointer(l.name)!, threads: threads) }
    }
  }

  /// Writes every trainable weight as `freeze` would store it (`qdqStored`): the model that
  /// validation measures and `finetune` would return.
  package func writeStoredWeights() {
    for (exec, ls) in zip(blocks, linears) {
      // safe: the executor loaded it
      for l in ls { l.qdqStored(into: exec.weightPointer(l.name)!, threads: threads) }
    }
  }

  /// Writes every trainable weight as the module holds it (dequantized): the input model,
  /// before any step.
  package func writeInputWeights() {
    for (exec, ls) in zip(blocks, linears) {
      for l in ls {
        guard let q = module.weights.quantized(l.name), let p = exec.weightPointer(l.name) else {
          continue
        }
        // safe: non-empty weights
        q.dequantized().withUnsafeBufferPointer { p.update(from: $0.baseAddress!, count: $0.count) }
      }
    }
  }

  /// Switches every quantized weight the model reads to the float weights it was quantized
  /// from (`true`: the teacher of `loss=kd`) or back to its quantized values. Throws, naming
  /// the weight, when a quantized weight's float values are not at hand.
  package func useFloatWeights(_ float: Bool) throws {
    // safe: every linear is in a block
    let named = allLinears.map { ($0.name, blocks[blockIndex(of: $0.name)!]) } + frozenQuantized
    for (name, exec) in named {
      guard let q = module.weights.quantized(name), let p = exec.weightPointer(name) else {
        continue
      }
      let values: [Float]
      if float {
        guard let src = q.source else {
          throw PassError(
            "loss=kd needs the float weights \(Printer.symbol(name)) was quantized from, which the pass that quantized it did not keep (rtn and autoround keep them within one pipeline); use loss=ce"
          )
        }
        values = src.floats()
      } else {
        values = q.dequantized()
      }
      // safe: non-empty weights
      values.withUnsafeBufferPointer { p.update(from: $0.baseAddress!, count: $0.count) }
    }
    if !float { writeWeights() }
  }

  private func blockIndex(of name: String) -> Int? {
    linears.firstIndex { $0.contains { $0.name == name } }
  }

  /// The logits of `samples · tokens` rows of block-0 inputs `x` (valid until the next call),
  /// forward only.
  package func logits(_ x: UnsafePointer<Float>, samples: Int, tokens: Int) -> UnsafePointer<Float>
  {
    var h = Array(UnsafeBufferPointer(start: x, count: samples * tokens * hidden))
    for exec in blocks {
      h.withUnsafeMutableBufferPointer { hp in
        let y = exec.forward(hp.baseAddress!, samples: samples, tokens: tokens)  // safe: non-empty
        hp.baseAddress!.update(from: y, count: hp.count)  // safe: as above
      }
      exec.releaseActivations()
    }
    return h.withUnsafeBufferPointer {
      tail.forward($0.baseAddress!, samples: samples, tokens: tokens)
    }  // safe: as above
  }

  /// Forward, loss and backward on `samples · tokens` rows of block-0 inputs `x`: `loss` gets
  /// the logits and fills their gradient, returning the loss; every trainable parameter's
  /// gradient is added to its `grad*` arrays. Returns the loss.
  package func lossAndGradients(
    _ x: UnsafePointer<Float>, samples: Int, tokens: Int,
    loss: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Double
  ) -> Double {
    let n = samples * tokens * hidden
    var inputs: [[Float]] = [Array(UnsafeBufferPointer(start: x, count: n))]
    for exec in blocks {
      let y = inputs.last!.withUnsafeBufferPointer {  // safe: non-empty
        exec.forward($0.baseAddress!, samples: samples, tokens: tokens)  // safe: n > 0
      }
      inputs.append(Array(UnsafeBufferPointer(start: y, count: n)))
      exec.releaseActivations()
    }
    let z = inputs.last!.withUnsafeBufferPointer {  // safe: non-empty
      tail.forward($0.baseAddress!, samples: samples, tokens: tokens)  // safe: as above
    }
    var dz = [Float](repeating: 0, count: samples * tokens * vocab)
    let value = dz.withUnsafeMutableBufferPointer { loss(z, $0.baseAddress!) }  // safe: non-empty
    _ = dz.withUnsafeBufferPointer { tail.backward($0.baseAddress!) }  // safe: as above
    // safe: computesInputGradient
    var dh = Array(UnsafeBufferPointer(start: tail.inputGradient!, count: n))
    tail.releaseActivations()
    dz = []
    for b in stride(from: blocks.count - 1, through: 0, by: -1) {
      let exec = blocks[b]
      exec.computesInputGradient = b > 0
      _ = inputs[b].withUnsafeBufferPointer {
        exec.forward($0.baseAddress!, samples: samples, tokens: tokens)  // safe: n > 0
      }
      let grads = dh.withUnsafeBufferPointer { exec.backward($0.baseAddress!) }  // safe: as above
      // safe: every trainable gets one
      for l in linears[b] { l.backward(dw: grads[l.name]!, threads: threads) }
      // safe: asked for
      if b > 0 { dh = Array(UnsafeBufferPointer(start: exec.inputGradient!, count: n)) }
      exec.releaseActivations()
      inputs[b + 1] = []
    }
    return value
  }
}
