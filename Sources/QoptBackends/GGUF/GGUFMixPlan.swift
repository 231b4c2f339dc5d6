import QoptFormats
import QoptIR

/// A llama-quantize mix applied to a module: the tensors as `llama_tensor_get_type` sees them,
/// and the type each one gets (`GGUFMixes`).
///
/// The emitter always writes the llama architecture (`general.architecture = llama`), so the
/// model facts are llama's: `num_hidden_layers`, the attention and key-value heads, and
/// `num_local_experts` for an MoE model.
enum GGUFMixPlan {
  /// The type of every tensor, keyed by GGUF name. `tensors` are (Hugging Face name, GGUF name,
  /// shape, source type) in any order; the mix rules count them in llama.cpp's order.
  static func types(
    _ tensors: [(hf: String, gguf: String, shape: [Int], sourceType: GGMLType)],
    module: Module, selection: GGUFTypeSelection, mix: LlamaMix, hasImatrix: Bool, output: String
  ) throws(BackendError) -> [String: GGMLType] {
    let config = ModelConfig(module)
    let heads = LlamaMetadata.heads(config, module)
    guard
      let layers = config.int("num_hidden_layers")
        ?? module.attributes["llama.block_count"]?.intValue
    else {
      throw BackendError(
        output: output,
        "the \(mix.rawValue) mix needs num_hidden_layers (the layer count its rules divide)")
    }
    let facts = LlamaModelFacts(
      architecture: "llama", layerCount: layers, headCount: heads?.q ?? 0,
      kvHeadCount: heads?.kv ?? 0,
      expertCount: config.int("num_experts") ?? config.int("num_local_experts") ?? 0)
    let infos = tensors.map {
      LlamaTensorInfo(
        name: $0.gguf, rowLength: $0.shape.last ?? 1, dimensionCount: $0.shape.count,
        sourceType: $0.sourceType, sourceName: $0.hf)
    }
    var overrides: [(pattern: NamePattern, type: GGMLType)] = []
    // `-gguf-type-override`: the last one given wins, llama-quantize's `--tensor-type` the first
    // that matches; so they go in reversed.
    for (p, t) in selection.overrides.reversed() {
      guard let pattern = overridePattern(p) else {
        throw BackendError(
          output: output, "-gguf-type-override pattern '\(p)' is not a valid regex")
      }
      overrides.append((pattern, t))
    }
    let options = LlamaMixOptions(
      mix: mix, hasImatrix: hasImatrix, pure: selection.pure, overrides: overrides,
      quantizeOutputTensor: !selection.leaveOutputTensor)
    do throws(LlamaMixError) {
      return try GGUFMixes.types(for: infos, model: facts, options: options)
    } catch {
      throw BackendError(output: output, tensor: error.tensor, error.message)
    }
  }

  /// `re:REGEX` searches; a plain name must equal the Hugging Face or GGUF name.
  static func overridePattern(_ p: String) -> NamePattern? {
    if p.hasPrefix("re:") { return try? NamePattern(String(p.dropFirst(3))) }
    let meta = Set(#"\.^$*+?()[]{}|"#)
    let escaped = p.map { meta.contains($0) ? "\\\($0)" : String($0) }.joined()
    return try? NamePattern("^" + escaped + "$")
  }
}
