import QoptFormats
import QoptIR

/// The Hugging Face files a serving stack reads beside tokenizer.json, built from a GGUF's
/// `tokenizer.*` keys, so a compressed-tensors or safetensors directory made from a GGUF loads
/// in transformers and vLLM with its special tokens and chat template:
///
///     tokenizer_config.json    bos/eos/pad/unk tokens (as strings, as transformers writes
///                              them), add_bos_token, chat_template, model_max_length
///     generation_config.json   bos/eos/pad token ids
///
/// Keys are sorted, as transformers writes them. nil when the GGUF names no special token.
enum GGUFServingFiles {
  static func tokenizerConfig(_ g: GGUFFile, contextLength: Int) -> [UInt8]? {
    let tokens = g["tokenizer.ggml.tokens"]?.arrayValue ?? []
    func token(_ key: String) -> String? {
      guard let id = g["tokenizer.ggml.\(key)_token_id"]?.intValue, id >= 0, id < tokens.count else { return nil }
      return tokens[id].stringValue
    }
    var pairs: [(String, JSON)] = [
      ("add_bos_token", .bool(g["tokenizer.ggml.add_bos_token"]?.boolValue ?? false)),
      ("add_eos_token", .bool(g["tokenizer.ggml.add_eos_token"]?.boolValue ?? false)),
      ("clean_up_tokenization_spaces", .bool(false)),
      ("model_max_length", .int(contextLength)),
      ("tokenizer_class", .string("PreTrainedTokenizerFast")),
    ]
    var any = false
    for (key, gguf) in [("bos_token", "bos"), ("eos_token", "eos"), ("pad_token", "padding"), ("unk_token", "unknown")] {
      if let t = token(gguf) {
        pairs.append((key, .string(t)))
        any = true
      }
    }
    if let t = g["tokenizer.chat_template"]?.stringValue {
      pairs.append(("chat_template", .string(t)))
      any = true
    }
    guard any else { return nil }
    return Array((JSON.object(pairs.sorted { $0.0 < $1.0 }).pretty + "\n").utf8)
  }

  static func generationConfig(_ g: GGUFFile) -> [UInt8]? {
    var pairs: [(String, JSON)] = []
    for (key, gguf) in [("bos_token_id", "bos"), ("eos_token_id", "eos"), ("pad_token_id", "padding")] {
      if let id = g["tokenizer.ggml.\(gguf)_token_id"]?.intValue { pairs.append((key, .int(id))) }
    }
    guard !pairs.isEmpty else { return nil }
    return Array((JSON.object(pairs.sorted { $0.0 < $1.0 }).pretty + "\n").utf8)
  }
}
