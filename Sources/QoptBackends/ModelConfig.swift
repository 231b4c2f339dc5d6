import QoptIR

/// The source model's Hugging Face configuration as the importer left it: the `hf_config`
/// module attribute (the original config.json text) merged with the module's other attributes
/// (which win, since passes may have updated them). GGUF-style keys (`tokenizer.ggml.*`,
/// `general.*`, `llama.*`) are metadata of their own and stay out of config.json.
struct ModelConfig {
  /// The merged config as a JSON object, keys sorted as transformers writes them.
  var json: JSON

  init(_ module: Module) {
    var pairs: [(String, JSON)] = []
    if let text = module.attributes["hf_config"]?.stringValue, let parsed = try? JSON.parse(text),
      let p = parsed.objectPairs
    {
      pairs = p
    }
    for (key, value) in module.attributes where key != "hf_config" && !key.contains(".") {
      guard let j = JSON(attribute: value) else { continue }
      if let i = pairs.firstIndex(where: { $0.0 == key }) { pairs[i].1 = j } else { pairs.append((key, j)) }
    }
    pairs.sort { $0.0 < $1.0 }
    json = .object(pairs)
  }

  func int(_ key: String) -> Int? { json[key]?.intValue }
  func double(_ key: String) -> Double? { json[key]?.doubleValue }
  func string(_ key: String) -> String? { json[key]?.stringValue }
  func bool(_ key: String) -> Bool? { json[key]?.boolValue }
}
