import QoptIR

/// The longest window a model runs on: its `max_position_embeddings` (config.json; a GGUF's
/// `llama.context_length`), which both frontends keep as a module attribute. Positions past it
/// are ones the model never saw in training, so `calibrate` and `eval` refuse longer windows
/// before doing any work, unless asked to allow them (for a model whose rope scaling is
/// meant to stretch past its configured context).
public enum ContextLength {
  /// The module's `max_position_embeddings`, or nil when it carries none (a hand-written `.ir`).
  public static func limit(of module: Module) -> Int? {
    module.attributes["max_position_embeddings"]?.intValue
  }

  /// Why a window of `seqlen` tokens is refused for `module`, or nil when it fits. `override`
  /// names the option that allows it, for the message.
  public static func problem(seqlen: Int, module: Module, override: String) -> String? {
    guard let limit = limit(of: module), seqlen > limit else { return nil }
    return "seqlen \(seqlen) exceeds the model's context length (max_position_embeddings = \(limit)); "
      + "use a window of at most \(limit) tokens, or \(override) if the model's rope scaling supports longer ones"
  }
}
