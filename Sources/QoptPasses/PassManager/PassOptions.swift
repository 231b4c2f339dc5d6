/// A pass's options: stored properties with their defaults plus a `schema` that declares each
/// option once — kebab-case key, help, type and valid range. The schema drives the pipeline
/// parser, `-print-passes` and the generated docs/passes.md.
public protocol PassOptions: Sendable {
  init()
  static var schema: [OptionField<Self>] { get }
}

/// Options of a pass that takes none.
public struct NoOptions: PassOptions {
  public init() {}
  public static let schema: [OptionField<NoOptions>] = []
}

/// Why an option value was refused (turned into a located `PipelineError` by the parser).
public struct OptionValueError: Error, Sendable {
  public var message: String
  public init(_ message: String) { self.message = message }
}

/// One declared option of `O`.
public struct OptionField<O>: Sendable {
  public let key: String
  public let help: String
  /// The value syntax shown to users: `int in 2...8`, `bool`, `full-range|minmax`, …
  public let valueSyntax: String
  let parse: @Sendable (inout O, String?) throws(OptionValueError) -> Void
  let render: @Sendable (O) -> String

  /// The option's current value in `options`, as pipeline text would write it.
  public func value(in options: O) -> String { render(options) }

  public static func int(
    _ key: String, _ path: WritableKeyPath<O, Int> & Sendable, _ help: String, in range: ClosedRange<Int>? = nil
  ) -> OptionField {
    OptionField(
      key: key, help: help, valueSyntax: range.map { "int in \($0.lowerBound)...\($0.upperBound)" } ?? "int",
      parse: { (o: inout O, s: String?) throws(OptionValueError) in
        guard let s, let v = Int(s) else { throw OptionValueError("expects an integer, found '\(s ?? "")'") }
        if let range, !range.contains(v) {
          throw OptionValueError("must be in \(range.lowerBound)...\(range.upperBound), found \(v)")
        }
        o[keyPath: path] = v
      }, render: { String($0[keyPath: path]) })
  }

  public static func double(
    _ key: String, _ path: WritableKeyPath<O, Double> & Sendable, _ help: String, in range: ClosedRange<Double>? = nil
  ) -> OptionField {
    OptionField(
      key: key, help: help, valueSyntax: range.map { "number in \($0.lowerBound)...\($0.upperBound)" } ?? "number",
      parse: { (o: inout O, s: String?) throws(OptionValueError) in
        guard let s, let v = Double(s), v.isFinite else { throw OptionValueError("expects a number, found '\(s ?? "")'") }
        if let range, !range.contains(v) {
          throw OptionValueError("must be in \(range.lowerBound)...\(range.upperBound), found \(s)")
        }
        o[keyPath: path] = v
      }, render: { "\($0[keyPath: path])" })
  }

  /// An optional number (`nil` until set: "use the pass's own default").
  public static func optionalDouble(
    _ key: String, _ path: WritableKeyPath<O, Double?> & Sendable, _ help: String, in range: ClosedRange<Double>
  ) -> OptionField {
    OptionField(
      key: key, help: help, valueSyntax: "number in \(range.lowerBound)...\(range.upperBound)",
      parse: { (o: inout O, s: String?) throws(OptionValueError) in
        guard let s, let v = Double(s), v.isFinite else { throw OptionValueError("expects a number, found '\(s ?? "")'") }
        guard range.contains(v) else { throw OptionValueError("must be in \(range.lowerBound)...\(range.upperBound), found \(s)") }
        o[keyPath: path] = v
      }, render: { $0[keyPath: path].map { "\($0)" } ?? "auto" })
  }

  /// A flag: `key`, `key=true|false`, or `no-key`.
  public static func bool(_ key: String, _ path: WritableKeyPath<O, Bool> & Sendable, _ help: String) -> OptionField {
    OptionField(
      key: key, help: help, valueSyntax: "bool",
      parse: { (o: inout O, s: String?) throws(OptionValueError) in
        switch s {
        case nil, "true", "1": o[keyPath: path] = true
        case "false", "0": o[keyPath: path] = false
        default: throw OptionValueError("expects true or false, found '\(s ?? "")'")
        }
      }, render: { $0[keyPath: path] ? "true" : "false" })
  }

  public static func string(_ key: String, _ path: WritableKeyPath<O, String> & Sendable, _ help: String) -> OptionField {
    OptionField(
      key: key, help: help, valueSyntax: "string",
      parse: { (o: inout O, s: String?) throws(OptionValueError) in
        guard let s else { throw OptionValueError("expects a value") }
        o[keyPath: path] = s
      }, render: { $0[keyPath: path] })
  }

  /// One of a fixed set of words.
  public static func choice(
    _ key: String, _ path: WritableKeyPath<O, String> & Sendable, _ choices: [String], _ help: String
  ) -> OptionField {
    OptionField(
      key: key, help: help, valueSyntax: choices.joined(separator: "|"),
      parse: { (o: inout O, s: String?) throws(OptionValueError) in
        guard let s, choices.contains(s) else {
          throw OptionValueError("must be one of \(choices.joined(separator: ", ")), found '\(s ?? "")'")
        }
        o[keyPath: path] = s
      }, render: { $0[keyPath: path] })
  }

  /// A comma-separated list (names or `re:` regexes, as compressed-tensors configs write them).
  public static func list(_ key: String, _ path: WritableKeyPath<O, [String]> & Sendable, _ help: String) -> OptionField {
    OptionField(
      key: key, help: help, valueSyntax: "list",
      parse: { (o: inout O, s: String?) throws(OptionValueError) in
        guard let s else { throw OptionValueError("expects a comma-separated list") }
        o[keyPath: path] = s.isEmpty ? [] : s.split(separator: ",").map { String($0) }
      }, render: { $0[keyPath: path].joined(separator: ",") })
  }
}

/// An option as the registry shows it, independent of the options type.
public struct OptionInfo: Sendable {
  public let key: String
  public let help: String
  public let valueSyntax: String
  public let defaultValue: String

  public init(key: String, help: String, valueSyntax: String, defaultValue: String) {
    self.key = key
    self.help = help
    self.valueSyntax = valueSyntax
    self.defaultValue = defaultValue
  }
}
