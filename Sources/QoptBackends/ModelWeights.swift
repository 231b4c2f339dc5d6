import QoptIR

/// What a backend needs to know about a module's weights beyond their bytes: which feed a
/// `linear` (Linear modules, quantizable in compressed-tensors), which feed an `embedding`,
/// and which are file blobs (tokenizer and generation files the importer carried along).
struct ModelWeights {
  /// Weight names used as the weight operand of a `linear` op.
  var linear: Set<String> = []
  /// Weight names used as the table of an `embedding` op.
  var embedding: Set<String> = []
  /// Dense U8 blobs named like files (`tokenizer.json`, `generation_config.json`, …).
  var files: [String] = []
  /// Every other weight, in store order.
  var tensors: [String] = []
  /// The input activation quantization of the linear reading each weight (`input_*`
  /// attributes), when it has one.
  var inputQuantization: [String: InputQuantization] = [:]

  init(_ module: Module) {
    var producers: [ObjectIdentifier: String] = [:]
    for op in module.allOps {
      if let name = op.paramName, let r = op.result { producers[ObjectIdentifier(r)] = name }
    }
    for op in module.allOps {
      switch op.kind {
      case .linear?:
        if op.operands.count > 1, let n = producers[ObjectIdentifier(op.operands[1])] {
          linear.insert(n)
          if let q = op.inputQuantization, inputQuantization[n] == nil { inputQuantization[n] = q }
        }
      case .embedding?:
        if op.operands.count > 1, let n = producers[ObjectIdentifier(op.operands[1])] { embedding.insert(n) }
      default: break
      }
    }
    let hasOps = !producers.isEmpty
    for name in module.weights.names {
      if let t = module.weights.dense(name), Self.isFileBlob(name: name, data: t) {
        files.append(name)
        continue
      }
      tensors.append(name)
      // A module without functions (a bare weight store): every 2-D `.weight` that is not an
      // embedding table counts as a Linear, as in a Hugging Face llama checkpoint.
      if !hasOps, let e = module.weights[name], e.shape.count == 2, name.hasSuffix(".weight") {
        if name.contains("embed") { embedding.insert(name) } else { linear.insert(name) }
      }
    }
  }

  /// Whether a dense tensor is a file carried as bytes: U8, rank 1, a name with a file
  /// extension that is not a parameter suffix.
  static func isFileBlob(name: String, data: TensorData) -> Bool {
    guard data.dtype == .u8, data.shape.count == 1, let dot = name.lastIndex(of: ".") else { return false }
    let ext = name[name.index(after: dot)...]
    return ["json", "txt", "model", "jinja", "tiktoken", "yaml", "py", "gguf"].contains(String(ext))
  }
}
