/// The type of one pass option and the rule that turns its pipeline text into a value. The
/// one definition of value syntax and value errors, shared by built-in options
/// (`OptionField` factories) and plugin options (`qopt_option_decl`).
public enum OptionKind: Sendable, Equatable {
  /// An integer, optionally within a range.
  case int(ClosedRange<Int>?)
  /// `auto` (the pass decides) or an integer in the range.
  case autoOrInt(ClosedRange<Int>)
  /// A finite number, optionally within a range.
  case number(ClosedRange<Double>?)
  /// `key`, `key=true|false|1|0`, or `no-key`.
  case bool
  /// Any text (no `;` or `>`, which the pipeline syntax reserves).
  case string
  /// One of these words.
  case choice([String])
  /// A comma-separated list.
  case list

  /// The value syntax `-print-passes` shows: `int in 2...8`, `bool`, `full-range|minmax`, …
  public var valueSyntax: String {
    switch self {
    case .int(let r): r.map { "int in \($0.lowerBound)...\($0.upperBound)" } ?? "int"
    case .autoOrInt(let r): "auto or int in \(r.lowerBound)...\(r.upperBound)"
    case .number(let r): r.map { "number in \($0.lowerBound)...\($0.upperBound)" } ?? "number"
    case .bool: "bool"
    case .string: "string"
    case .choice(let c): c.joined(separator: "|")
    case .list: "list"
    }
  }

  /// Parses a pipeline value (`nil` for a bare key); throws the message tail the pipeline
  /// error appends after "option 'k' of pass 'p' ".
  public func parse(_ text: String?) throws(OptionValueError) -> OptionValue {
    switch self {
    case .int(let range):
      guard let text, let v = Int(text) else {
        throw OptionValueError("expects an integer, found '\(text ?? "")'")
      }
      if let range, !range.contains(v) {
        throw OptionValueError("must be in \(range.lowerBound)...\(range.upperBound), found \(v)")
      }
      return .int(v)
    case .autoOrInt(let range):
      if text == "auto" { return .auto }
      guard let text, let v = Int(text) else {
        throw OptionValueError("expects an integer or auto, found '\(text ?? "")'")
      }
      guard range.contains(v) else {
        throw OptionValueError(
          "must be auto or in \(range.lowerBound)...\(range.upperBound), found \(v)")
      }
      return .int(v)
    case .number(let range):
      guard let text, let v = Double(text), v.isFinite else {
        throw OptionValueError("expects a number, found '\(text ?? "")'")
      }
      if let range, !range.contains(v) {
        throw OptionValueError(
          "must be in \(range.lowerBound)...\(range.upperBound), found \(text)")
      }
      return .number(v)
    case .bool:
      switch text {
      case nil, "true", "1": return .bool(true)
      case "false", "0": return .bool(false)
      default: throw OptionValueError("expects true or false, found '\(text ?? "")'")
      }
    case .string:
      guard let text else { throw OptionValueError("expects a value") }
      return .string(text)
    case .choice(let choices):
      guard let text, choices.contains(text) else {
        throw OptionValueError(
          "must be one of \(choices.joined(separator: ", ")), found '\(text ?? "")'")
      }
      return .string(text)
    case .list:
      guard let text else { throw OptionValueError("expects a comma-separated list") }
      return .list(text.isEmpty ? [] : text.split(separator: ",").map { String($0) })
    }
  }
}

/// A parsed option value.
public enum OptionValue: Sendable, Equatable {
  case int(Int)
  case number(Double)
  case bool(Bool)
  /// A string or a choice's word.
  case string(String)
  case list([String])
  /// `auto`: the pass chooses.
  case auto

  /// The value as pipeline text writes it.
  public var text: String {
    switch self {
    case .int(let v): String(v)
    case .number(let v): "\(v)"
    case .bool(let v): v ? "true" : "false"
    case .string(let v): v
    case .list(let v): v.joined(separator: ",")
    case .auto: "auto"
    }
  }
}

/// The option parser of every pass, built-in or plugin: applies the pipeline's `key=value`
/// items to `options` in order. Unknown keys are errors (with a suggestion), `no-key` is
/// `key=false` for bools only, and each value is checked by its field's `OptionKind`; every
/// error is located at the item's column.
public func parsePassOptions<O>(
  _ items: [(key: String, value: String?, column: Int)], schema: [OptionField<O>],
  into options: inout O,
  pass: String
) throws(PipelineError) {
  for item in items {
    let negated = item.key.hasPrefix("no-") && !schema.contains { $0.key == item.key }
    let key = negated ? String(item.key.dropFirst(3)) : item.key
    guard let field = schema.first(where: { $0.key == key }) else {
      let keys = schema.map(\.key)
      var m = "unknown option '\(item.key)' for pass '\(pass)'"
      if let s = closestMatch(to: item.key, in: keys) { m += "; did you mean '\(s)'?" }
      m +=
        keys.isEmpty
        ? " (it takes no options)" : " (valid options: \(keys.joined(separator: ", ")))"
      throw PipelineError(m, column: item.column)
    }
    if negated && (field.kind != .bool || item.value != nil) {
      throw PipelineError(
        "'no-' applies only to bool options without a value: '\(item.key)'", column: item.column)
    }
    do {
      field.apply(&options, try field.kind.parse(negated ? "false" : item.value))
    } catch {
      throw PipelineError("option '\(key)' of pass '\(pass)' \(error.message)", column: item.column)
    }
  }
}
