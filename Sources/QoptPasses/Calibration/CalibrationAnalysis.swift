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
    /// Per-tensor range as a moving average over calibration windows (optimum-quanto's
    /// calibration): each window's min, max and max |x| update `v ← m·v + (1 − m)·window`
    /// with the `momentum` of `calibrate`; the first window sets them.
    public var movingMin: Float = 0
    public var movingMax: Float = 0
    public var movingAbsMax: Float = 0
    /// The first window's min, max and max |x|, which the moving averages start from (adding
    /// a later data shard's averages needs them, `CalibrationShards`).
    public var firstMin: Float = 0
    public var firstMax: Float = 0
    public var firstAbsMax: Float = 0
    /// Per-token ranges: the smallest, mean and largest `max |x_row|` over all calibration
    /// tokens (what dynamic per-token scales times 448 or 127.5 range over).
    public var tokenAbsMaxMin: Float = .infinity
    public var tokenAbsMaxMean: Float = 0
    public var tokenAbsMaxMax: Float = 0
    /// Windows and token rows observed.
    public var windows = 0
    public var tokens = 0

    /// Empty statistics for an input `columns` wide.
    package init(columns: Int) {
      absMax = .init(repeating: 0, count: columns)
      meanSquare = .init(repeating: 0, count: columns)
      min = .infinity
      max = -.infinity
    }

    /// The per-tensor absolute maximum `max(|min|, |max|)`.
    public var tensorAbsMax: Float { Swift.max(abs(Swift.min(min, 0)), abs(Swift.max(max, 0))) }
  }

  public let windows: [[Int32]]
  public let seqlen: Int
  /// Input rows of the first block, one sample per window.
  public let blockInputs: ActivationStore
  /// The `memory-budget` the cached activations share (later passes' stores draw on it too).
  public var memoryBudget: MemoryBudget { blockInputs.budget }
  /// Keyed by weight name of the linear reading the input.
  public let linearStats: [String: ChannelStats]
  /// The input rows of the linears `calibrate<keep-inputs=…>` named, keyed like `linearStats`
  /// (one sample per window, `seqlen` rows each); plugins read them as "input_rows".
  public let linearInputs: [String: ActivationStore]
  /// `data hash/samples/seqlen/seed`, also stored as module attributes.
  public let fingerprint: String
  /// `calibrate`'s data shards (`data-shards`), the one this run computes (`shard`, -1: all)
  /// and the directory of their partials (`partials`, "" for none): `gptq<float-inputs>` sums
  /// its Hessians over the same shards (`GPTQHessianPartial`).
  package let shards: CalibrationShards
  package let shard: Int
  package let partials: String
  /// Whether `awq` or `smoothquant` folded scales computed from these statistics into the
  /// weights (in a data shard's run, from that shard's statistics alone).
  package let foldedScales: Bool

  init(
    windows: [[Int32]], seqlen: Int, blockInputs: ActivationStore,
    linearStats: [String: ChannelStats],
    linearInputs: [String: ActivationStore] = [:], fingerprint: String,
    shards: CalibrationShards? = nil, shard: Int = -1, partials: String = "",
    foldedScales: Bool = false
  ) {
    self.foldedScales = foldedScales
    self.shards = shards ?? CalibrationShards(count: 1, windows: windows.count)
    self.shard = shard
    self.partials = partials
    self.windows = windows
    self.seqlen = seqlen
    self.blockInputs = blockInputs
    self.linearStats = linearStats
    self.linearInputs = linearInputs
    self.fingerprint = fingerprint
  }
}

/// The result of `calibrate`; not computable on demand (it needs the pass's options), so a
/// pass asking for it without `calibrate` earlier in the pipeline gets a clear error.
public enum CalibrationAnalysis: Analysis {
  public static let name = "calibration"
  public static func compute(
    _ module: Module, _ analyses: AnalysisManager
  ) throws -> CalibrationData {
    // Named after the pass that asked for the analysis (`PassError.naming`).
    throw PassError(
      "no calibration data: put 'calibrate' before this pass in -passes (e.g. -passes=calibrate,autoround)"
    )
  }
}

extension CalibrationData {
  /// The data after the inputs of the linears reading `names` were divided per channel by `s`
  /// (a scale folded by `awq` or `smoothquant`), so later passes see the inputs the linears now
  /// get: per-channel max |x| and mean x² scale exactly (by `1/s`, `1/s²`); the per-tensor and
  /// per-token ranges, which per-channel factors do not determine, become the bound
  /// `±max_j(max|x_j| / s_j)` (exact for the absolute maximum, symmetric for min and max).
  func scalingInputs(of names: [String], by s: [Float]) -> CalibrationData {
    var stats = linearStats
    for n in names {
      guard var st = stats[n], st.absMax.count == s.count else { continue }
      for j in s.indices {
        st.absMax[j] /= s[j]
        st.meanSquare[j] /= s[j] * s[j]
      }
      let a = st.absMax.max() ?? 0
      (st.min, st.max) = (-a, a)
      (st.movingMin, st.movingMax, st.movingAbsMax) = (-a, a, a)
      st.tokenAbsMaxMax = a
      st.tokenAbsMaxMin = Swift.min(st.tokenAbsMaxMin, a)
      st.tokenAbsMaxMean = Swift.min(st.tokenAbsMaxMean, a)
      stats[n] = st
    }
    return CalibrationData(
      windows: windows, seqlen: seqlen, blockInputs: blockInputs, linearStats: stats,
      linearInputs: linearInputs,
      fingerprint: fingerprint, shards: shards, shard: shard, partials: partials,
      foldedScales: true)
  }
}
