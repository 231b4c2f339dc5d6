import QoptIR
import QoptRuntime

/// `assign-schemes<score=kl>`: how much each weight alone hurts the model's output. For every
/// weight, the mean KL divergence (nats per predicted token) of the next-token distributions
/// with only that weight at its smallest candidate and every other weight float, from the
/// float model's, over the first `kl-windows` calibration windows cut to `kl-seqlen` tokens.
///
/// One forward per weight; the float logits are computed once and kept
/// (`kl-windows × (kl-seqlen − 1) × vocab` floats).
enum SchemeSensitivity {
  static func measure(
    _ module: Module, names: [String], groups: [[SchemeCandidate]],
    options: AssignSchemesOptions, context: PassContext
  ) throws -> [Double] {
    let calibration = try context.analysis(CalibrationAnalysis.self)
    let windows = calibration.windows.prefix(options.klWindows).map {
      Array($0.prefix(options.klSeqlen))
    }
    guard let first = windows.first, first.count >= 2 else {
      throw context.error("score=kl needs calibration windows of at least 2 tokens")
    }
    let interpreter = Interpreter(module: module, policy: .keepAll)
    var base: [[Float]] = []
    for w in windows { base.append(try KLDivergence.logits(interpreter, w)) }
    var out: [Double] = []
    let phase = Progress.shared.phase("assign-schemes: kl", total: names.count)
    defer { phase.close() }
    for (i, name) in names.enumerated() {
      guard let w = module.weights.dense(name) else { out.append(0); continue }
      let ref = groups[i].min { $0.bytes < $1.bytes }!.scheme
      let q = SchemeCandidates.roundTrip(
        w.floats(), rows: w.shape[0], columns: w.shape[1], as: ref,
        importance: module.importance[name].flatMap {
          $0.isResolved && $0.columns == w.shape[1] ? $0.columnWeights() : nil
        }, threads: context.threads)
      try interpreter.substitute(name, TensorData(floats: q, shape: w.shape))
      var kl = 0.0
      var rows = 0
      for (wi, window) in windows.enumerated() {
        let m = try KLDivergence.logits(interpreter, window)
        let v = m.count / (window.count - 1)
        let s = base[wi].withUnsafeBufferPointer { bp in
          m.withUnsafeBufferPointer { mp in
            // safe: both hold (T − 1) × V logits.
            KLDivergence.compare(
              base: bp.baseAddress!, model: mp.baseAddress!, rows: window.count - 1, columns: v,
              targets: nil)
          }
        }
        kl += s.kl.reduce(0, +)
        rows += s.kl.count
      }
      try interpreter.substitute(name, nil)
      out.append(kl / Double(max(rows, 1)))
      context.debug("\(name): KL \(out.last!) at \(ref.spelling)")
      phase.step(i + 1)
    }
    return out
  }
}
