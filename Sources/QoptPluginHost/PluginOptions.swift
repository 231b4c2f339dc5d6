import CQoptPlugin
import QoptPasses

/// One option a plugin pass declared (`qopt_option_decl`), copied out of the plugin's memory
/// at registration. It is parsed by the same parser as a built-in option
/// (`parsePassOptions(_:schema:into:pass:)`), from the same `OptionKind`, so values, ranges and
/// messages match the built-ins'.
struct PluginOption: Sendable {
  var key: String
  var kind: OptionKind
  var help: String
  var defaultValue: OptionValue

  /// The field the shared parser fills: the value goes into the run's dictionary.
  var field: OptionField<PluginOptionValues> {
    let key = key
    return OptionField(
      key: key, help: help, kind: kind, apply: { o, v in o.values[key] = v },
      render: { $0.values[key]?.text ?? "" })
  }

  var info: OptionInfo {
    OptionInfo(key: key, help: help, valueSyntax: kind.valueSyntax, defaultValue: defaultValue.text)
  }
}

/// The options of one plugin pass invocation: every declared key with its value (the default
/// unless the pipeline set it). The schema lives in the `PluginOption`s, so this type's own
/// static schema is empty.
struct PluginOptionValues: PassOptions {
  var values: [String: OptionValue] = [:]
  init() {}
  static let schema: [OptionField<PluginOptionValues>] = []

  /// Parses pipeline items against `declared` with the parser every pass uses.
  static func parse(
    _ items: [(key: String, value: String?, column: Int)], declared: [PluginOption], pass: String
  ) throws(PipelineError) -> PluginOptionValues {
    var o = PluginOptionValues()
    for d in declared { o.values[d.key] = d.defaultValue }
    try parsePassOptions(items, schema: declared.map(\.field), into: &o, pass: pass)
    return o
  }
}

extension PluginOption {
  /// Copies and checks one `qopt_option_decl`; the message says what is wrong.
  init(_ d: qopt_option_decl) throws(OptionValueError) {
    guard let k = d.key.map({ String(cString: $0) }), !k.isEmpty else {
      throw OptionValueError("an option has no key")
    }
    guard k.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
      throw OptionValueError("option key '\(k)' may use only letters, digits, '-', '_' and '.'")
    }
    key = k
    help = d.help.map { String(cString: $0) } ?? ""
    var range: ClosedRange<Double>?
    if d.has_range != 0 {
      guard d.min.isFinite, d.max.isFinite, d.min <= d.max else {
        throw OptionValueError("option '\(k)' has an invalid range \(d.min)...\(d.max)")
      }
      range = d.min...d.max
    }
    let defString = d.default_string.map { String(cString: $0) } ?? ""
    switch d.kind {
    case QOPT_OPTION_INT:
      // An int range is whole numbers within Int's range (the bounds round inwards).
      let ints = try range.map { r throws(OptionValueError) -> ClosedRange<Int> in
        let lo = r.lowerBound.rounded(.up), hi = r.upperBound.rounded(.down)
        guard lo <= hi, lo >= -9.2e18, hi <= 9.2e18 else {
          throw OptionValueError("option '\(k)' has an invalid integer range \(r.lowerBound)...\(r.upperBound)")
        }
        return Int(lo)...Int(hi)
      }
      kind = .int(ints)
      defaultValue = .int(Int(d.default_int))
      if let ints, !ints.contains(Int(d.default_int)) {
        throw OptionValueError("option '\(k)' has default \(d.default_int) outside its range")
      }
    case QOPT_OPTION_FLOAT:
      kind = .number(range)
      guard d.default_float.isFinite else { throw OptionValueError("option '\(k)' has a default that is not finite") }
      defaultValue = .number(d.default_float)
      if let range, !range.contains(d.default_float) {
        throw OptionValueError("option '\(k)' has default \(d.default_float) outside its range")
      }
    case QOPT_OPTION_BOOL:
      kind = .bool
      defaultValue = .bool(d.default_bool != 0)
    case QOPT_OPTION_STRING:
      kind = .string
      defaultValue = .string(defString)
    case QOPT_OPTION_CHOICE:
      guard d.choice_count > 0, let list = d.choices else {
        throw OptionValueError("choice option '\(k)' declares no choices")
      }
      var choices: [String] = []
      for i in 0..<Int(d.choice_count) {
        guard let c = list[i] else { throw OptionValueError("choice option '\(k)' has a NULL choice") }
        choices.append(String(cString: c))
      }
      guard choices.contains(defString) else {
        throw OptionValueError("choice option '\(k)' has default '\(defString)', not one of its choices")
      }
      kind = .choice(choices)
      defaultValue = .string(defString)
    default:
      throw OptionValueError("option '\(k)' has unknown kind \(d.kind)")
    }
  }
}
