import QoptIR
import QoptRuntime

/// The decoder structure of a module as calibration and AutoRound see it: `@main` embeds the
/// token ids and calls the block functions one after another, each on the previous one's output.
struct ModelBlocks {
  let module: Module
  /// The block functions in call order.
  let blocks: [Function]
  /// The `embedding` op whose output feeds the first block.
  let embedding: Op
  /// The factor of a `scale` op between the embedding and the first block (Gemma's √hidden).
  let embeddingScale: Float?

  /// `pass` names the errors; without it, the pass manager names them after the running pass.
  init(module: Module, pass: String = "") throws {
    self.module = module
    guard let main = module.function(named: "main") else {
      throw PassError(pass: pass, "the module has no @main")
    }
    let calls = main.body.filter { $0.kind == .call }
    guard let first = calls.first else {
      throw PassError(pass: pass, "@main calls no block function")
    }
    var fs: [Function] = []
    for (i, c) in calls.enumerated() {
      guard let name = c.callee, let f = module.function(named: name) else {
        throw PassError(pass: pass, "call to an unknown function", at: c.location)
      }
      if i > 0 && c.operands.first !== calls[i - 1].result {
        throw PassError(
          pass: pass, "@\(name) is not called on the previous block's output", at: c.location)
      }
      fs.append(f)
    }
    var input = first.operands.first?.definingOp
    var scale: Float?
    if let s = input, s.kind == .scale, let f = s.attributes["factor"]?.doubleValue {
      scale = Float(f)
      input = s.operands.first?.definingOp
    }
    guard let e = input, e.kind == .embedding else {
      throw PassError(
        pass: pass, "the first block's input is not an embedding (or a scaled embedding)",
        at: first.location)
    }
    blocks = fs
    embedding = e
    embeddingScale = scale
  }

  /// The embedding table's shape and a lookup that writes the f32 rows of `ids` (scaled, for
  /// a scaled embedding) one after another.
  ///
  /// A table decoded on use (a bf16 or GGUF checkpoint) is read a row per token, never whole:
  /// Llama-3's 128256 × 4096 table is 2.1 GB as f32, while 8 windows of 256 tokens need 2048 rows.
  func embeddingLookup() throws -> (
    rows: Int, columns: Int, lookup: ([Int32], UnsafeMutablePointer<Float>) -> Void
  ) {
    guard let p = embedding.operands[1].definingOp, let name = p.paramName,
      let entry = module.weights[name], entry.shape.count == 2
    else {
      throw PassError("the embedding table is not a 2-D param", at: embedding.location)
    }
    let (rows, cols) = (entry.shape[0], entry.shape[1])
    let scale = embeddingScale
    func scaled(_ y: UnsafeMutablePointer<Float>, _ n: Int) {
      if let f = scale { for i in 0..<n { y[i] = y[i] * f } }
    }
    if case .dense(let t) = entry, t.decodesRows {
      return (
        rows, cols,
        { ids, y in
          for (r, id) in ids.enumerated() { _ = t.decodeRows(Int(id)..<(Int(id) + 1), into: y + r * cols) }
          scaled(y, ids.count * cols)
        }
      )
    }
    let values: [Float]
    switch entry {
    case .dense(let t): values = t.floats()
    case .quantized(let q): values = q.dequantized()
    }
    return (
      rows, cols,
      { ids, y in
        ids.withUnsafeBufferPointer { ip in
          values.withUnsafeBufferPointer { tp in
            // safe: non-empty
            Kernels.embedding(
              ip.baseAddress!, count: ids.count, table: tp.baseAddress!, columns: cols, into: y)
          }
        }
        // Scaling the table equals scaling each looked-up row (one f32 product per element).
        scaled(y, ids.count * cols)
      }
    )
  }
}
