import QoptIR

/// What the GGUF backend reads of a weight's importance statistics (llama.cpp's imatrix: per
/// input column, the sum of x² over the calibration tokens, and the token count), per expert.
///
/// A protocol so that the backend does not depend on where the statistics come from
/// (`calibrate`, or an imatrix file read by `-imatrix=FILE`).
package protocol ColumnImportance {
  /// Input columns of the weight.
  var columns: Int { get }
  /// `experts × columns` sums of x².
  var sumSquares: [Float] { get }
  /// Tokens summed, one count per expert.
  var tokens: [Int] { get }
}

extension ColumnImportance {
  /// The quant weights llama-quantize hands `ggml_quantize_chunk` (`load_imatrix` in
  /// tools/quantize/quantize.cpp): per column `sum / count` in f32, and 1 for every column of
  /// an expert that saw no token.
  package func quantWeights() -> [Float] {
    var w = [Float](repeating: 1, count: sumSquares.count)
    for (e, count) in tokens.enumerated() where count > 0 {
      let n = Float(count)
      for c in 0..<columns { w[e * columns + c] = sumSquares[e * columns + c] / n }
    }
    return w
  }
}

extension ImportanceStats: ColumnImportance {}

extension GGUFEmitter {
  /// The importance statistics `module` carries (from `calibrate` or `-imatrix=FILE`), keyed by
  /// weight name; statistics without their sums (a module read from standard input) are left out.
  static func importance(of module: Module) -> [String: any ColumnImportance] {
    module.importance.filter { $0.value.isResolved }
  }
}
