/// llama.cpp's importance-matrix statistic for one linear's weight: for every input column the
/// sum over tokens of x² (`in_sum2` in llama-imatrix's files) and how many tokens were summed.
///
/// A dense linear has one matrix (`experts == 1`). MoE weights stacked as `[experts, out, in]`
/// keep one row of sums and one token count per expert, as llama-imatrix does (an expert sees
/// only the tokens routed to it), so `sumSquares` is `experts × columns`, row-major.
///
/// The sums are kept rather than the means so that statistics from several runs (or files)
/// add up exactly as llama-imatrix's `--in-file` merging does.
public struct ImportanceStats: Hashable, Sendable {
  /// Input columns of the weight (its `in` dimension).
  public var columns: Int
  /// `experts × columns` sums of x², or empty while unresolved (a module read from standard
  /// input names its statistics but has no sidecar to hold their sums).
  public var sumSquares: [Float]
  /// Tokens summed, one count per expert.
  public var tokens: [Int]

  /// Zero statistics for a weight with `columns` inputs and `experts` matrices.
  public init(columns: Int, experts: Int = 1) {
    precondition(columns > 0 && experts > 0, "importance stats need columns and experts")
    self.columns = columns
    self.sumSquares = [Float](repeating: 0, count: columns * experts)
    self.tokens = [Int](repeating: 0, count: experts)
  }

  /// Statistics from stored sums (`tokens.count` rows of `columns`).
  public init(columns: Int, sumSquares: [Float], tokens: [Int]) {
    self.columns = columns
    self.sumSquares = sumSquares
    self.tokens = tokens
  }

  /// The number of matrices (experts) the statistic covers.
  public var experts: Int { tokens.count }

  /// Whether the sums are present (`experts × columns` of them).
  public var isResolved: Bool { sumSquares.count == columns * experts }

  /// Adds `rows` token rows of `columns` floats at `x` to expert `expert`'s sums, one row after
  /// another in float, as llama-imatrix's `collect_imatrix` does (so sums agree with it to the
  /// rounding of the activations themselves).
  ///
  /// - Complexity: O(rows × columns).
  public mutating func accumulate(_ x: UnsafePointer<Float>, rows: Int, expert: Int = 0) {
    precondition(expert >= 0 && expert < experts && isResolved, "expert \(expert) out of range")
    let n = columns
    sumSquares.withUnsafeMutableBufferPointer { acc in
      let a = acc.baseAddress! + expert * n  // safe: isResolved, so acc holds experts × n
      for r in 0..<rows {
        let xr = x + r * n
        for j in 0..<n { a[j] += xr[j] * xr[j] }
      }
    }
    tokens[expert] += rows
  }

  /// Adds another statistic of the same shape (llama-imatrix's `--in-file` merging).
  public mutating func merge(_ other: ImportanceStats) {
    precondition(
      other.columns == columns && other.experts == experts, "importance stats of different shapes")
    for i in sumSquares.indices { sumSquares[i] += other.sumSquares[i] }
    for e in tokens.indices { tokens[e] += other.tokens[e] }
  }

  /// llama-quantize's per-column weights for expert `expert`: the mean x² (sum / count in
  /// float), or 1 for every column when the expert saw no tokens (`load_imatrix` in
  /// `tools/quantize/quantize.cpp`).
  public func columnWeights(expert: Int = 0) -> [Float] {
    let count = Float(tokens[expert])
    let row = sumSquares[(expert * columns)..<((expert + 1) * columns)]
    guard count > 0 else { return [Float](repeating: 1, count: columns) }
    return row.map { $0 / count }
  }
}
