import QoptIR

/// A backend: writes a module's weights (and the configuration needed to load them) in one
/// packed on-disk format.
///
/// Emitters validate the whole module in `check` before `emit` creates anything, so a scheme
/// the format cannot hold is reported without leaving a partial output; `emit` then streams
/// tensor by tensor (each packed tensor is produced only while it is being written).
public protocol WeightEmitter {
  /// The `-emit=` name (`compressed-tensors`, `gguf`).
  var formatName: String { get }
  /// Throws the first tensor the format cannot represent, naming it and the reason.
  func check(_ module: Module, output: String) throws(BackendError)
  /// Why the format cannot hold a 2-D weight `name` of `shape` quantized as `scheme`, or nil
  /// if it can: the format's rule, asked before any pass runs (`PipelinePlan`), so a pipeline
  /// whose result cannot be written fails in a second instead of after the work.
  func refusal(name: String, shape: [Int], scheme: QuantScheme) -> String?
  /// Checks, then writes `module` to `output` atomically (temporary name, then rename).
  func emit(_ module: Module, to output: String) throws
}
