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

/// One declared option of `O`: its key, help and `OptionKind`, and where a parsed value goes.
/// Built-in passes declare fields with the typed factories below; a plugin's fields are made
/// at registration with `init(key:help:kind:apply:render:)` — both are parsed by the one
/// parser, `parsePassOptions(_:schema:into:pass:)`, so their messages are the same.
public struct OptionField<O>: Sendable {
  public let key: String
  public let help: String
  /// The value's type and the rule that parses it.
  public let kind: OptionKind
  let apply: @Sendable (inout O, OptionValue) -> Void
  let render: @Sendable (O) -> String

  /// The value syntax shown to users: `int in 2...8`, `bool`, `full-range|minmax`, …
  public var valueSyntax: String { kind.valueSyntax }

  /// A field whose storage is known only at run time (a plugin pass's): `apply` stores a value
  /// `kind` parsed, `render` shows the current one as pipeline text would write it.
  public init(
    key: String, help: String, kind: OptionKind,
    apply: @escaping @Sendable (inout O, OptionValue) -> Void,
    render: @escaping @Sendable (O) -> String
  ) {
    self.key = key
    self.help = help
    self.kind = kind
    self.apply = apply
    self.render = render
  }

  /// The option's current value in `options`, as pipeline text would write it.
  public func value(in options: O) -> String { render(options) }

  public static func int(
    _ key: String, _ path: WritableKeyPath<O, Int> & Sendable, _ help: String,
    in range: ClosedRange<Int>? = nil
  ) -> OptionField {
    OptionField(
      key: key, help: help, kind: .int(range),
      apply: { o, v in if case .int(let x) = v { o[keyPath: path] = x } },
      render: { String($0[keyPath: path]) })
  }

  public static func double(
    _ key: String, _ path: WritableKeyPath<O, Double> & Sendable, _ help: String,
    in range: ClosedRange<Double>? = nil
  ) -> OptionField {
    OptionField(
      key: key, help: help, kind: .number(range),
      apply: { o, v in if case .number(let x) = v { o[keyPath: path] = x } },
      render: { "\($0[keyPath: path])" })
  }

  /// An optional number (`nil` until set: "use the pass's own default").
  public static func optionalDouble(
    _ key: String, _ path: WritableKeyPath<O, Double?> & Sendable, _ help: String,
    in range: ClosedRange<Double>
  ) -> OptionField {
    OptionField(
      key: key, help: help, kind: .number(range),
      apply: { o, v in if case .number(let x) = v { o[keyPath: path] = x } },
      render: { $0[keyPath: path].map { "\($0)" } ?? "auto" })
  }

  /// A flag: `key`, `key=true|false`, or `no-key`.
  public static func bool(
    _ key: String, _ path: WritableKeyPath<O, Bool> & Sendable, _ help: String
  ) -> OptionField {
    OptionField(
      key: key, help: help, kind: .bool,
      apply: { o, v in if case .bool(let x) = v { o[keyPath: path] = x } },
      render: { $0[keyPath: path] ? "true" : "false" })
  }

  public static func string(
    _ key: String, _ path: WritableKeyPath<O, String> & Sendable, _ help: String
  ) -> OptionField {
    OptionField(
      key: key, help: help, kind: .string,
      apply: { o, v in if case .string(let x) = v { o[keyPath: path] = x } },
      render: { $0[keyPath: path] })
  }

  /// One of `cases`, written as its raw value: the pass reads a typed value, never a string
  /// it must turn back into an enum.
  public static func choice<C: RawRepresentable & Sendable>(
    _ key: String, _ path: WritableKeyPath<O, C> & Sendable, _ cases: [C], _ help: String
  ) -> OptionField where C.RawValue == String {
    OptionField(
      key: key, help: help, kind: .choice(cases.map(\.rawValue)),
      // The kind admits only the raw values of `cases`, so the lookup always finds one.
      apply: { o, v in
        if case .string(let s) = v, let c = cases.first(where: { $0.rawValue == s }) {
          o[keyPath: path] = c
        }
      },
      render: { $0[keyPath: path].rawValue })
  }

  /// One of every case of `C`.
  public static func choice<C: RawRepresentable & CaseIterable & Sendable>(
    _ key: String, _ path: WritableKeyPath<O, C> & Sendable, _ help: String
  ) -> OptionField where C.RawValue == String {
    choice(key, path, Array(C.allCases), help)
  }

  /// One of a fixed set of words kept as a string (for passes whose words name no enum yet;
  /// prefer the typed `choice` above).
  public static func choice(
    _ key: String, _ path: WritableKeyPath<O, String> & Sendable, _ choices: [String],
    _ help: String
  ) -> OptionField {
    OptionField(
      key: key, help: help, kind: .choice(choices),
      apply: { o, v in if case .string(let x) = v { o[keyPath: path] = x } },
      render: { $0[keyPath: path] })
  }

  /// A comma-separated list (names or `re:` regexes, as compressed-tensors configs write them).
  public static func list(
    _ key: String, _ path: WritableKeyPath<O, [String]> & Sendable, _ help: String
  ) -> OptionField {
    OptionField(
      key: key, help: help, kind: .list,
      apply: { o, v in if case .list(let x) = v { o[keyPath: path] = x } },
      render: { $0[keyPath: path].joined(separator: ",") })
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

extension OptionField {
  /// This field as a field of options `P` that hold an `O` at `path`: passes that take another
  /// pass's options (`gptq` takes `rtn`'s weight options) share its declaration, so the keys,
  /// help, ranges and defaults cannot drift apart.
  public func nested<P>(in path: WritableKeyPath<P, O> & Sendable) -> OptionField<P> {
    let apply = self.apply
    let render = self.render
    return OptionField<P>(
      key: key, help: help, kind: kind, apply: { p, v in apply(&p[keyPath: path], v) },
      render: { render($0[keyPath: path]) })
  }
}
