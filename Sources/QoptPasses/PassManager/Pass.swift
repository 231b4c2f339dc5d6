import QoptIR

/// A named module transformation with typed options. A pass is a value, not a subclass:
///
///     let verifyPass = Pass("verify", summary: "check the module") { module, _: NoOptions, context in
///       try context.verify()
///     }
public struct Pass: Sendable {
  public let name: String
  public let summary: String
  /// Longer reference text for docs/passes.md (markdown).
  public let details: String
  /// The analyses this pass keeps valid when it changes the module (all survive when it
  /// changes nothing).
  public let preserves: [String]
  public let options: [OptionInfo]
  /// What the pass does to weight types, for the check that runs before the pipeline
  /// (`PipelinePlan`): declared next to the pass, from its options alone.
  let planRule: PlanRule
  let makeOptions: @Sendable ([(key: String, value: String?, column: Int)]) throws(PipelineError) -> any PassOptions
  let body: @Sendable (Module, any PassOptions, PassContext) throws -> Void

  /// A pass over the whole module.
  public init<O: PassOptions>(
    _ name: String, summary: String, details: String = "", options: O.Type, preserves: [String] = [],
    plan: (@Sendable (Module, O, inout WeightPlan) throws -> Void)? = nil,
    run: @escaping @Sendable (Module, O, PassContext) throws -> Void
  ) {
    self.name = name
    self.summary = summary
    self.details = details
    self.preserves = preserves
    // safe: makeOptions builds every options value this pass receives as an O.
    self.planRule = plan.map { f -> PlanRule in .predicts { m, o, p in try f(m, o as! O, &p) } } ?? .keepsWeightTypes
    let defaults = O()
    self.options = O.schema.map { OptionInfo(key: $0.key, help: $0.help, valueSyntax: $0.valueSyntax, defaultValue: $0.value(in: defaults)) }
    self.makeOptions = { (items) throws(PipelineError) in
      var o = O()
      try parsePassOptions(items, schema: O.schema, into: &o, pass: name)
      return o
    }
    self.body = { module, options, context in
      // safe: makeOptions built this value as an O.
      try run(module, options as! O, context)
    }
  }

  /// A pass whose option schema is known only at run time (a plugin's): `options` is what
  /// `-print-passes` shows, `parse` turns the pipeline's `key=value` items into options (and
  /// rejects bad ones with a located `PipelineError`), and `run` receives them back.
  public init(
    _ name: String, summary: String, details: String = "", options: [OptionInfo], preserves: [String] = [],
    parse: @escaping @Sendable ([(key: String, value: String?, column: Int)]) throws(PipelineError) -> any PassOptions,
    run: @escaping @Sendable (Module, any PassOptions, PassContext) throws -> Void
  ) {
    self.name = name
    self.summary = summary
    self.details = details
    self.preserves = preserves
    self.options = options
    // A plugin may quantize anything: nothing after it can be predicted.
    self.planRule = .unknown
    self.makeOptions = parse
    self.body = run
  }

  /// A pass that runs `run` on every function of the module in order.
  public static func function<O: PassOptions>(
    _ name: String, summary: String, options: O.Type, preserves: [String] = [],
    run: @escaping @Sendable (Function, O, PassContext) throws -> Void
  ) -> Pass {
    Pass(name, summary: summary, options: options, preserves: preserves) { module, o, context in
      for f in module.functions { try run(f, o, context) }
    }
  }

  /// The options of this pass parsed from `key=value` items (defaults for the rest).
  public func parseOptions(_ items: [(key: String, value: String?, column: Int)]) throws(PipelineError) -> any PassOptions {
    try makeOptions(items)
  }
}

/// The nearest of `candidates` to `word` by edit distance, if it is close enough to suggest.
public func closestMatch(to word: String, in candidates: [String]) -> String? {
  func distance(_ a: [Character], _ b: [Character]) -> Int {
    var prev = Array(0...b.count)
    for (i, ca) in a.enumerated() {
      var cur = [i + 1] + Array(repeating: 0, count: b.count)
      for (j, cb) in b.enumerated() {
        cur[j + 1] = min(prev[j + 1] + 1, cur[j] + 1, prev[j] + (ca == cb ? 0 : 1))
      }
      prev = cur
    }
    return prev[b.count]
  }
  let w = Array(word)
  let best = candidates.map { ($0, distance(w, Array($0))) }.min { $0.1 < $1.1 }
  guard let best, best.1 <= max(2, w.count / 3) else { return nil }
  return best.0
}
