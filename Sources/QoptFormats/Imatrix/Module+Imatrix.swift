import QoptIR

/// Moving importance statistics between a module (IR weight names, `model.layers.0.…`) and an
/// imatrix file (llama.cpp names, `blk.0.attn_q.weight`), through the GGUF naming table.
extension ImatrixFile {
  /// The IR weight name of file entry `name`: its Hugging Face name when the GGUF table knows
  /// it, else the name itself (a module imported with its own names).
  package static func irName(_ name: String, in module: Module) -> String {
    if let hf = GGUFTensorNames.hf(gguf: name),
      module.weights.contains(hf) || !module.weights.contains(name)
    {
      return hf
    }
    return name
  }

  /// The llama.cpp name of IR weight `name`.
  package static func llamaName(_ name: String) -> String {
    GGUFTensorNames.gguf(hf: name) ?? name
  }

  /// The file's statistics keyed by `module`'s weight names. Every entry must name a weight of
  /// the module whose input dimension equals the entry's columns (an error naming `path` and
  /// the tensor otherwise); weights the file does not mention get none, as in llama-quantize.
  /// A legacy entry of an expert-stacked `[E, out, in]` weight (E·in values, one count) is
  /// split into E experts sharing that count.
  public func importance(
    for module: Module, path: String
  ) throws(FrontendError) -> [String: ImportanceStats] {
    var shapes: [String: [Int]] = [:]
    for op in module.allOps {
      if let n = op.paramName, let t = op.result?.type { shapes[n] = t.dims }
    }
    var out: [String: ImportanceStats] = [:]
    for name in entries.keys.sorted() {
      var s = entries[name]!  // safe: iterating its keys
      let ir = Self.irName(name, in: module)
      guard let shape = shapes[ir], shape.count >= 2, let columns = shape.last else {
        let also = ir == name ? "" : " (IR name '\(ir)')"
        throw FrontendError(
          file: path, key: name, "tensor '\(name)'\(also) is not a matrix weight of the model")
      }
      let experts = shape.count == 3 ? shape[0] : 1
      if s.experts == 1, experts > 1, s.columns == experts * columns {
        s = ImportanceStats(
          columns: columns, sumSquares: s.sumSquares,
          tokens: [Int](repeating: s.tokens[0], count: experts))
      }
      guard s.columns == columns, s.experts == experts else {
        throw FrontendError(
          file: path, key: name,
          "tensor '\(name)' has \(s.experts) × \(s.columns) values but weight '\(ir)' has \(experts) × \(columns) inputs"
        )
      }
      out[ir] = s
    }
    return out
  }

  /// An imatrix file of `module`'s statistics under llama.cpp names.
  public init(module: Module, datasets: [String], chunkCount: Int, chunkSize: Int) {
    var entries: [String: ImportanceStats] = [:]
    for (name, s) in module.importance where s.isResolved { entries[Self.llamaName(name)] = s }
    self.init(entries: entries, datasets: datasets, chunkCount: chunkCount, chunkSize: chunkSize)
  }
}
