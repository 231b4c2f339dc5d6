import QoptIR

/// `-emit=safetensors`: a plain Hugging Face float checkpoint (config.json without
/// `quantization_config`, model.safetensors — sharded with an index above the shard size —
/// and the tokenizer and serving files), for a dequantized or transformed model that
/// transformers, `qopt import` and `qopt eval` read as any float checkpoint.
///
/// Quantized weights are written dequantized, in the precision of the checkpoint they came
/// from (`DenseDType`); the layout and the directory safety are the compressed-tensors
/// emitter's, with the packing switched off.
public struct SafetensorsEmitter: WeightEmitter {
  var base: CompressedTensorsEmitter
  public var formatName: String { "safetensors" }

  public init(maxShardSize: Int = 5_000_000_000, denseDType: DenseDType = .source, force: Bool = false, command: [String] = []) {
    base = CompressedTensorsEmitter(maxShardSize: maxShardSize, denseDType: denseDType, force: force, command: command)
    base.dequantize = true
  }

  public func check(_ module: Module, output: String) throws(BackendError) { try base.check(module, output: output) }
  /// Every scheme: quantized weights are written dequantized.
  public func refusal(name: String, shape: [Int], scheme: QuantScheme) -> String? { nil }
  public func emit(_ module: Module, to output: String) throws { try base.emit(module, to: output) }
}
