import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// How a pass changes weight types, as the check before the pipeline sees it.
enum PlanRule: Sendable {
  /// The pass never changes a weight's type (analyses, cleanup, debug, `fuse-scales`, …).
  case keepsWeightTypes
  /// The pass's declared prediction: from the module and its options, what it will quantize.
  case predicts(@Sendable (Module, any PassOptions, inout WeightPlan) throws -> Void)
  /// Not known before running (a plugin): nothing after it can be predicted.
  case unknown
}

/// The module's weights as a pipeline will leave them, predicted from the passes' options
/// before any pass runs. Passes declare their part next to their definition (the `plan:`
/// argument of `Pass`); `PipelinePlan.check` runs the predictions and asks the output format
/// whether it can hold the result, so a conflict is reported in a second, not after an hour.
public struct WeightPlan: Sendable {
  public struct Weight: Sendable {
    public let name: String
    public let shape: [Int]
    /// The predicted type: nil while the weight stays float.
    public var scheme: QuantScheme?
    /// The pass that will quantize it; nil when the input already had this type.
    public var producer: String?
    public let location: SourceLocation?
  }

  public private(set) var weights: [Weight] = []
  private var index: [String: Int] = [:]
  /// The pass whose prediction is running (set by `PipelinePlan.check`).
  public internal(set) var pass = ""

  /// Every weight read by a `param` op, with its type in the input.
  public init(_ module: Module) {
    for op in module.allOps {
      guard let name = op.paramName, index[name] == nil, let entry = module.weights[name] else {
        continue
      }
      let scheme: QuantScheme? = if case .quantized(let q) = entry { q.scheme } else { nil }
      index[name] = weights.count
      weights.append(
        Weight(name: name, shape: entry.shape, scheme: scheme, producer: nil, location: op.location)
      )
    }
  }

  public subscript(name: String) -> Weight? { index[name].map { weights[$0] } }

  /// Records that the pass whose prediction is running will quantize `name` as `scheme`.
  public mutating func quantize(_ name: String, as scheme: QuantScheme) {
    quantize(name, as: scheme, by: pass)
  }

  /// Records that `pass` will quantize `name` as `scheme`.
  public mutating func quantize(_ name: String, as scheme: QuantScheme, by pass: String) {
    guard let i = index[name] else { return }
    weights[i].scheme = scheme
    weights[i].producer = pass
  }

  /// Refuses a pass that would change nothing: every weight it selects is already quantized
  /// (by the input or an earlier pass), and the pass quantizes float weights only. With `each`,
  /// any selected weight that is already quantized is refused (a pass that cannot skip one).
  /// `pass` names the error; without it, the pass manager names it after the running pass.
  public func requireFloat(_ names: [String], pass: String = "", each: Bool = false) throws {
    let quantized = names.compactMap { n in self[n].flatMap { w in w.scheme.map { (w, $0) } } }
    guard let (w, s) = quantized.first, each || quantized.count == names.count else { return }
    let origin = w.producer.map { "by '\($0)' earlier in the pipeline" } ?? "in the input"
    let what =
      each
      ? "weight \(w.name) is already quantized (\(SchemeName.short(s)) \(origin)); it tunes float weights only"
      : "every weight it selects is already quantized (\(w.name) is \(SchemeName.short(s)) \(origin)); it quantizes float weights only, so it would change nothing"
    throw PassError(
      pass: pass,
      what + ". Start from the float checkpoint, or leave these weights out with ignore=",
      at: w.location)
  }
}

/// Short scheme names for messages and the summary: `int4 sym group 128`, `fp8 per channel`.
public enum SchemeName {
  public static func short(_ s: QuantScheme) -> String {
    switch s {
    case .int(let i): "int\(i.bits) \(i.symmetric ? "sym" : "asym") \(granularity(i.granularity))"
    case .nvfp4: "nvfp4"
    case .fp8(let g): "fp8 \(granularity(g))"
    case .ggml(let k): k.name
    }
  }

  static func granularity(_ g: Granularity) -> String {
    switch g {
    case .tensor: "per tensor"
    case .channel: "per channel"
    case .group(let n): "group \(n)"
    }
  }
}

/// The check that runs before any pass: predicts the pipeline's effect on weight types and
/// checks it against the output format's rules.
public enum PipelinePlan {
  /// Why the output format cannot hold a weight of this shape and scheme, or nil if it can.
  public typealias Refusal = (_ name: String, _ shape: [Int], _ scheme: QuantScheme) -> String?

  /// Throws the first pass that would change nothing, or the weights the pipeline would
  /// quantize in a way `format` refuses (with the group sizes that would work). Weights the
  /// input already had quantized are left to the emitter's own check.
  @discardableResult
  public static func check(
    _ pipeline: [PassInvocation], on module: Module, format: String? = nil, refusal: Refusal? = nil
  ) throws -> WeightPlan {
    var plan = WeightPlan(module)
    for inv in pipeline {
      switch inv.pass.planRule {
      case .keepsWeightTypes: continue
      case .predicts(let f):
        plan.pass = inv.pass.name
        try PassError.naming(inv.pass.name) { try f(module, inv.options, &plan) }
      case .unknown: return plan  // a plugin: what follows cannot be predicted
      }
    }
    guard let format, let refusal else { return plan }
    // Conflicts grouped by the pass that causes them and the reason's scheme.
    var conflicts:
      [(pass: String, scheme: QuantScheme, weights: [WeightPlan.Weight], reason: String)] = []
    for w in plan.weights {
      guard let pass = w.producer, let s = w.scheme, let why = refusal(w.name, w.shape, s) else {
        continue
      }
      if let i = conflicts.firstIndex(where: { $0.pass == pass && $0.scheme == s }) {
        conflicts[i].weights.append(w)
      } else {
        conflicts.append((pass, s, [w], why))
      }
    }
    guard !conflicts.isEmpty else { return plan }
    var notes: [String] = []
    for c in conflicts.dropFirst() {
      notes.append(
        "'\(c.pass)' would also write \(c.weights.count) weight(s) as \(SchemeName.short(c.scheme)), e.g. \(c.weights[0].name): \(c.reason)"
      )
    }
    let c = conflicts[0]
    let w = c.weights[0]
    var message =
      "-emit=\(format) cannot hold what '\(c.pass)' would produce (checked before any pass ran): "
      + "\(c.weights.count) weight(s) as \(SchemeName.short(c.scheme)), e.g. \(w.name) (\(w.shape.map(String.init).joined(separator: "x"))): \(c.reason)"
    let fixes = groupSizeFixes(c.scheme, c.weights, refusal)
    if !fixes.isEmpty {
      message +=
        "; fix: \(c.pass)<group-size=\(fixes[0])>"
        + fixes.dropFirst().map { " or group-size=\($0)" }.joined()
    }
    throw PassError(pass: "pipeline", message, at: nil).withNotes(notes)
  }

  /// Up to two group sizes (nearest to the refused one first, the smaller on a tie; per
  /// channel when none fits) under which `refusal` accepts every weight in `weights`.
  static func groupSizeFixes(
    _ scheme: QuantScheme, _ weights: [WeightPlan.Weight], _ refusal: Refusal
  ) -> [Int] {
    func with(_ g: Granularity) -> QuantScheme? {
      switch scheme {
      case .int(var i):
        i.granularity = g
        return .int(i)
      case .fp8: return .fp8(g)
      case .nvfp4, .ggml: return nil
      }
    }
    var current = Int.max
    switch scheme {
    case .int(let i): if case .group(let n) = i.granularity { current = n } else { return [] }
    case .fp8(let g): if case .group(let n) = g { current = n } else { return [] }
    case .nvfp4, .ggml: return []
    }
    var out: [Int] = []
    func distance(_ g: Int) -> (Double, Int) {
      (abs(log2(Double(g)) - log2(Double(current))), g > current ? 1 : 0)
    }
    for g in [256, 128, 64, 32, 16].filter({ $0 != current }).sorted(by: {
      distance($0) < distance($1)
    }) {
      guard let s = with(.group(g)) else { continue }
      if weights.allSatisfy({ refusal($0.name, $0.shape, s) == nil }) { out.append(g) }
      if out.count == 2 { break }
    }
    if out.isEmpty, let s = with(.channel),
      weights.allSatisfy({ refusal($0.name, $0.shape, s) == nil })
    {
      out.append(-1)
    }
    return out
  }
}

extension PassError {
  /// The error with notes under its message.
  func withNotes(_ notes: [String]) -> PlannedPipelineError {
    PlannedPipelineError(error: self, notes: notes)
  }
}

/// A conflict found before the pipeline ran, with notes on further conflicts.
public struct PlannedPipelineError: DiagnosticError, Sendable {
  public let error: PassError
  public let notes: [String]
  public var diagnostics: [Diagnostic] {
    error.diagnostics.map { d in
      var d = d
      d.notes += notes
      return d
    }
  }
}
