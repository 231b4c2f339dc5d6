import CQoptPlugin
import QoptPasses

/// One option a plugin pass declared (`qopt_option_decl`), copied out of the plugin's memory
/// at registration.
struct PluginOption: Sendable {
  enum Kind: Sendable, Equatable {
    case int, float, bool, string
    case choice([String])
  }

  var key: String
  var kind: Kind
  var help: String
  var defaultValue: PluginOptionValue
  /// Valid range of an int or float option.
  var range: ClosedRange<Double>?

  /// The value syntax `-print-passes` shows, as built-in options write it.
  var valueSyntax: String {
    switch kind {
    case .int: range.map { "int in \(Int64($0.lowerBound))...\(Int64($0.upperBound))" } ?? "int"
    case .float: range.map { "number in \($0.lowerBound)...\($0.upperBound)" } ?? "number"
    case .bool: "bool"
    case .string: "string"
    case .choice(let c): c.joined(separator: "|")
    }
  }

  var info: OptionInfo {
    OptionInfo(key: key, help: help, valueSyntax: valueSyntax, defaultValue: defaultValue.text)
  }

  /// Parses a pipeline value (`nil` for a bare key); throws the message tail the pipeline
  /// error appends after "option 'k' of pass 'p' ".
  func parse(_ text: String?) throws(OptionValueError) -> PluginOptionValue {
    switch kind {
    case .int:
      guard let text, let v = Int64(text) else { throw OptionValueError("expects an integer, found '\(text ?? "")'") }
      if let range, !range.contains(Double(v)) {
        throw OptionValueError("must be in \(Int64(range.lowerBound))...\(Int64(range.upperBound)), found \(v)")
      }
      return .int(v)
    case .float:
      guard let text, let v = Double(text), v.isFinite else { throw OptionValueError("expects a number, found '\(text ?? "")'") }
      if let range, !range.contains(v) {
        throw OptionValueError("must be in \(range.lowerBound)...\(range.upperBound), found \(text)")
      }
      return .float(v)
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
        throw OptionValueError("must be one of \(choices.joined(separator: ", ")), found '\(text ?? "")'")
      }
      return .string(text)
    }
  }
}

/// A parsed option value of a plugin pass.
enum PluginOptionValue: Sendable, Equatable {
  case int(Int64)
  case float(Double)
  case bool(Bool)
  case string(String)

  var text: String {
    switch self {
    case .int(let v): String(v)
    case .float(let v): "\(v)"
    case .bool(let v): v ? "true" : "false"
    case .string(let v): v
    }
  }
}

/// The options of one plugin pass invocation: every declared key with its value (the default
/// unless the pipeline set it). The schema lives in the `PluginOption`s, so this type's own
/// static schema is empty.
struct PluginOptionValues: PassOptions {
  var values: [String: PluginOptionValue] = [:]
  init() {}
  static let schema: [OptionField<PluginOptionValues>] = []

  /// Parses pipeline items against `declared`, with the same rules and messages as built-in
  /// passes: unknown keys (with a suggestion), `no-key` for bools, typed values and ranges.
  static func parse(
    _ items: [(key: String, value: String?, column: Int)], declared: [PluginOption], pass: String
  ) throws(PipelineError) -> PluginOptionValues {
    var o = PluginOptionValues()
    for d in declared { o.values[d.key] = d.defaultValue }
    for item in items {
      let isNo = item.key.hasPrefix("no-") && !declared.contains { $0.key == item.key }
      let key = isNo ? String(item.key.dropFirst(3)) : item.key
      guard let field = declared.first(where: { $0.key == key }) else {
        let keys = declared.map(\.key)
        var m = "unknown option '\(item.key)' for pass '\(pass)'"
        if let s = closestMatch(to: item.key, in: keys) { m += "; did you mean '\(s)'?" }
        m += keys.isEmpty ? " (it takes no options)" : " (valid options: \(keys.joined(separator: ", ")))"
        throw PipelineError(m, column: item.column)
      }
      if isNo && (field.kind != .bool || item.value != nil) {
        throw PipelineError("'no-' applies only to bool options without a value: '\(item.key)'", column: item.column)
      }
      do {
        o.values[key] = try field.parse(isNo ? "false" : item.value)
      } catch {
        throw PipelineError("option '\(key)' of pass '\(pass)' \(error.message)", column: item.column)
      }
    }
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
    self.range = range
    let defString = d.default_string.map { String(cString: $0) } ?? ""
    switch d.kind {
    case QOPT_OPTION_INT:
      kind = .int
      defaultValue = .int(d.default_int)
      if let range, !range.contains(Double(d.default_int)) {
        throw OptionValueError("option '\(k)' has default \(d.default_int) outside its range")
      }
    case QOPT_OPTION_FLOAT:
      kind = .float
      defaultValue = .float(d.default_float)
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
