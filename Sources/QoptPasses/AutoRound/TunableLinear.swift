import QoptIR

/// What AutoRound's SignSGD loop needs of one quantized linear weight, whatever its scheme:
/// the quantize-dequantize forward from the current parameters, the gradients of the
/// parameters from `∂L/∂w_qdq`, a SignSGD step, snapshots, and the final codes and scales.
///
/// Parameters: V (one per weight, `[rows, cols]`), α and β (one per group, `[rows, groups]`).
/// A scheme that has no use for β (NVFP4 clips only the max side) reports zero gradients for it.
package protocol TunableLinear: AnyObject {
  var name: String { get }
  var rows: Int { get }
  var cols: Int { get }
  var groupsPerRow: Int { get }
  /// Writes `w_qdq` (`rows · cols` floats) into `out`.
  func qdq(into out: UnsafeMutablePointer<Float>)
  /// Gradients of V, α, β from `dw = ∂L/∂w_qdq`, using the state of the last `qdq`.
  func backward(dw: UnsafePointer<Float>, dv: UnsafeMutablePointer<Float>, dAlpha: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>)
  /// One SignSGD step: `p ← p − lr · sign(g)`.
  func step(dv: UnsafePointer<Float>, dAlpha: UnsafePointer<Float>, dBeta: UnsafePointer<Float>, lr: Float, minmaxLR: Float, tuneMinmax: Bool)
  /// The codes and scales of the current parameters, as `rtn` stores the scheme.
  func finalize() -> QuantizedTensor
  var parameters: (v: [Float], alpha: [Float], beta: [Float]) { get set }
}

extension SignRoundLinear: TunableLinear {}
