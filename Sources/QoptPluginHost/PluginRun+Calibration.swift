import CQoptPlugin
import QoptIR
import QoptPasses

/// `calibration_stats`: what `calibrate` recorded about the input of a linear, lent to the
/// plugin as f32 views (the same numbers built-in passes read from `CalibrationAnalysis`).
extension PluginRun {
  /// The statistics a plugin may ask for, by their ABI names.
  enum CalibrationStat: String {
    /// Per input channel `max |x|`, `[in_features]`.
    case absmax
    /// Per input channel `mean x²`, `[in_features]` (auto-round's and llama.cpp's imatrix).
    case meanSquare = "mean_sq"
    /// The number of token rows observed, `[1]`.
    case tokens
    /// The input rows themselves, `[tokens, in_features]`, for the linears named by
    /// `calibrate<keep-inputs=…>`.
    case inputRows = "input_rows"
  }

  /// The weight whose linear input `op` names: the weight of a `linear`, or a `param` itself.
  func calibrationKey(_ op: Op) -> String? {
    if op.kind == .linear, op.operands.count > 1 { return op.operands[1].definingOp?.paramName }
    return op.paramName
  }

  func calibrationStats(
    _ op: Op, _ name: String, into out: UnsafeMutablePointer<qopt_f32_view>
  ) -> Int32 {
    guard let key = calibrationKey(op) else { return QOPT_ERR_INVALID_ARGUMENT }
    guard let stat = CalibrationStat(rawValue: name) else { return QOPT_ERR_NOT_FOUND }
    // Absent when no `calibrate` ran earlier (or a pass in between did not preserve it).
    guard let data = try? context.analysis(CalibrationAnalysis.self) else {
      return QOPT_ERR_NOT_AVAILABLE
    }
    guard let s = data.linearStats[key], s.tokens > 0 else { return QOPT_ERR_NOT_AVAILABLE }
    switch stat {
    case .absmax: return lend(s.absMax, shape: [s.absMax.count], into: out)
    case .meanSquare: return lend(s.meanSquare, shape: [s.meanSquare.count], into: out)
    case .tokens: return lend([Float(s.tokens)], shape: [1], into: out)
    case .inputRows:
      guard let store = data.linearInputs[key] else { return QOPT_ERR_NOT_AVAILABLE }
      let rows = store.samples * store.tokens
      let buffer = floatBuffer(rows * store.width)
      do {
        if let base = buffer.baseAddress, rows > 0 { try store.read(0..<store.samples, into: base) }
      } catch {
        _ = release(UnsafeRawPointer(buffer.baseAddress!))  // safe: floatBuffer never returns a nil base
        diagnose(
          severity: QOPT_SEVERITY_WARNING, op: op,
          message: "cannot read the kept inputs of \(Printer.symbol(key)): \(error)")
        return QOPT_ERR_FAILED
      }
      return describe(buffer, shape: [rows, store.width], into: out)
    }
  }

  /// Copies `values` into a lent buffer and describes it in `out`.
  private func lend(
    _ values: [Float], shape: [Int], into out: UnsafeMutablePointer<qopt_f32_view>
  ) -> Int32 {
    let buffer = floatBuffer(values.count)
    _ = buffer.initialize(from: values)
    return describe(buffer, shape: shape, into: out)
  }
}
