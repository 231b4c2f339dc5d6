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
  /// Gradients of V, α, β from `dw = ∂L/∂w_qdq`, using the state of the last `qdq`. `dv` may
  /// be `dw` itself (the tuning loop takes the gradient in place).
  func backward(
    dw: UnsafePointer<Float>, dv: UnsafeMutablePointer<Float>, dAlpha: UnsafeMutablePointer<Float>,
    dBeta: UnsafeMutablePointer<Float>)
  /// One SignSGD step: `p ← p − lr · sign(g)`.
  func step(
    dv: UnsafePointer<Float>, dAlpha: UnsafePointer<Float>, dBeta: UnsafePointer<Float>, lr: Float,
    minmaxLR: Float, tuneMinmax: Bool)
  /// The codes and scales of the current parameters, as `rtn` stores the scheme.
  func finalize() -> QuantizedTensor
  var parameters: (v: [Float], alpha: [Float], beta: [Float]) { get set }
  /// Keeps the current parameters as the best iteration's, compactly: their codes (packed,
  /// `PackedCodes`) and α, β, not V — all that `finalize` and `qdq` need. Called between a
  /// forward and its backward (the scales are those of the last `qdq`); a later call
  /// overwrites the kept codes in place.
  func saveBest()
  /// Puts the kept best back: α and β, and its codes, which `qdq` and `finalize` then read
  /// (bit for bit what they computed from V). V is released: the linear is tuned no further.
  func restoreBest()
  /// The bytes `saveBest` holds (0 when nothing is kept).
  var bestBytes: Int { get }
}

extension TunableLinear {
  /// Whether the parameters are the initial ones bit for bit (V = 0, α = β = 1): a best
  /// iteration there is restored by `resetParameters()`, without a saved copy.
  var hasInitialParameters: Bool {
    let p = parameters
    let one = Float(1).bitPattern
    return p.v.allSatisfy { $0.bitPattern == 0 } && p.alpha.allSatisfy { $0.bitPattern == one }
      && p.beta.allSatisfy { $0.bitPattern == one }
  }

  /// Puts the initial parameters back (V = 0, α = β = 1) in place, allocating nothing.
  func resetParameters() {
    var p = parameters
    parameters = ([], [], [])  // the arrays are then unique and filled in place
    p.v.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    p.alpha.withUnsafeMutableBufferPointer { $0.update(repeating: 1) }
    p.beta.withUnsafeMutableBufferPointer { $0.update(repeating: 1) }
    parameters = p
  }
}

extension SignRoundLinear: TunableLinear {}
