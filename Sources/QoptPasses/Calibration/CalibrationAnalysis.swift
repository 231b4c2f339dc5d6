import QoptIR

/// What `calibrate` leaves for later passes: the token windows, the first block's input
/// activations, and statistics of every linear's input on the float model.
public final class CalibrationData: @unchecked Sendable {
  public struct ChannelStats: Sendable {
    /// Per input channel `max |x|` over all calibration tokens.
    public var absMax: [Float]
    /// Per input channel `mean x²` over all calibration tokens (auto-round's imatrix).
    public var meanSquare: [Float]
    /// Smallest and largest activation seen (for static activation quantization).
    public var min: Float
    public var max: Float
  }

  public let windows: [[Int32]]
  public let seqlen: Int
  /// Input rows of the first block, one sample per window.
  public let blockInputs: ActivationStore
  /// Keyed by weight name of the linear reading the input.
  public let linearStats: [String: ChannelStats]
  /// `data hash/samples/seqlen/seed`, also stored as module attributes.
  public let fingerprint: String

  init(windows: [[Int32]], seqlen: Int, blockInputs: ActivationStore, linearStats: [String: ChannelStats], fingerprint: String) {
    self.windows = windows
    self.seqlen = seqlen
    self.blockInputs = blockInputs
    self.linearStats = linearStats
    self.fingerprint = fingerprint
  }
}

/// The result of `calibrate`; not computable on demand (it needs the pass's options), so a
/// pass asking for it without `calibrate` earlier in the pipeline gets a clear error.
public enum CalibrationAnalysis: Analysis {
  public static let name = "calibration"
  public static func compute(_ module: Module, _ analyses: AnalysisManager) throws -> CalibrationData {
    throw PassError(pass: "calibration", "no calibration data: put 'calibrate' before this pass in -passes (e.g. -passes=calibrate,autoround)")
  }
}
