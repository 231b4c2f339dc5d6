/// How a `linear` quantizes its input activation before the matmul (W8A8): written as
/// attributes of the op, so a dump shows it and `.ir` text round-trips it:
///
///     %y = linear %x, %w {input_mode = "dynamic", input_quant = "fp8", input_strategy = "token"}
///     %y = linear %x, %w {input_mode = "static", input_quant = "int8", input_scale = 0.0123, input_strategy = "tensor"}
///
/// The runtime fake-quantizes the input as compressed-tensors does when transformers evaluates
/// such a checkpoint: `x̂ = q(x / s) · s`, with `s = amax / 448` (fp8, E4M3 rounding, saturating)
/// or `amax / 127.5` (int8, clamp to [−128, 127] then round half to even); amax per token row
/// (`token`) or over the whole input (`tensor`), computed at run time (`dynamic`) or calibrated
/// and stored as `input_scale` (`static`).
///
/// NVFP4 inputs (W4A4) use compressed-tensors' "local" rule: a calibrated global scale
/// (`input_global_scale`, `448·6/amax`) and per 16-value group of each row an E4M3 scale
/// computed at run time, codes E2M1:
///
///     %y = linear %x, %w {input_global_scale = 1234.5, input_mode = "local", input_quant = "nvfp4", input_strategy = "group"}
public struct InputQuantization: Hashable, Sendable {
  public enum Kind: String, Sendable, CaseIterable {
    case int8, fp8, nvfp4
    /// The largest code magnitude the scale maps amax to ((qmax − qmin) / 2, as
    /// compressed-tensors' `calculate_qparams` divides).
    public var scaleDivisor: Float { self == .fp8 ? 448 : self == .int8 ? 127.5 : 6 }
  }
  /// `local`: a static global scale, group scales at run time (NVFP4 only).
  public enum Mode: String, Sendable, CaseIterable { case dynamic, `static`, local }
  /// `group`: 16-value groups of a row (NVFP4 only).
  public enum Strategy: String, Sendable, CaseIterable { case tensor, token, group }

  public var kind: Kind
  public var mode: Mode
  public var strategy: Strategy
  /// The calibrated per-tensor scale (`static` only).
  public var scale: Float?
  /// The calibrated NVFP4 global scale (`nvfp4` only).
  public var globalScale: Float?

  public init(kind: Kind, mode: Mode, strategy: Strategy, scale: Float? = nil, globalScale: Float? = nil) {
    self.kind = kind
    self.mode = mode
    self.strategy = strategy
    self.scale = scale
    self.globalScale = globalScale
  }

  /// NVFP4 inputs with the calibrated global scale `gs`.
  public static func nvfp4(globalScale gs: Float) -> InputQuantization {
    InputQuantization(kind: .nvfp4, mode: .local, strategy: .group, globalScale: gs)
  }

  /// The attribute keys this owns on a `linear` op.
  public static let keys = ["input_global_scale", "input_mode", "input_quant", "input_scale", "input_strategy"]

  /// The settings of `op` (nil when it has no `input_*` attribute), or the first problem.
  public static func parse(_ attributes: AttributeDict) -> Result<InputQuantization?, InputQuantizationError> {
    let present = attributes.keys.filter { $0.hasPrefix("input_") }
    guard !present.isEmpty else { return .success(nil) }
    func fail(_ m: String) -> Result<InputQuantization?, InputQuantizationError> { .failure(InputQuantizationError(message: m)) }
    if let unknown = present.first(where: { !keys.contains($0) }) {
      return fail("unknown activation attribute '\(unknown)' (known: \(keys.joined(separator: ", ")))")
    }
    func word<T: RawRepresentable & CaseIterable>(_ key: String, _: T.Type) -> Result<T, InputQuantizationError> where T.RawValue == String {
      let choices = T.allCases.map(\.rawValue).joined(separator: ", ")
      guard let a = attributes[key] else { return .failure(InputQuantizationError(message: "needs '\(key)' (\(choices)) with the other input_* attributes")) }
      guard let s = a.stringValue, let v = T(rawValue: s) else {
        return .failure(InputQuantizationError(message: "'\(key)' must be one of \(choices), found \(Printer.attribute(a))"))
      }
      return .success(v)
    }
    let kind: Kind, mode: Mode, strategy: Strategy
    switch word("input_quant", Kind.self) { case .success(let v): kind = v; case .failure(let e): return .failure(e) }
    switch word("input_mode", Mode.self) { case .success(let v): mode = v; case .failure(let e): return .failure(e) }
    switch word("input_strategy", Strategy.self) { case .success(let v): strategy = v; case .failure(let e): return .failure(e) }
    var scale: Float?
    if let a = attributes["input_scale"] {
      guard let d = a.doubleValue, d.isFinite, d > 0 else { return fail("'input_scale' must be a positive finite number, found \(Printer.attribute(a))") }
      scale = Float(d)
    }
    var globalScale: Float?
    if let a = attributes["input_global_scale"] {
      guard let d = a.doubleValue, d.isFinite, d > 0 else { return fail("'input_global_scale' must be a positive finite number, found \(Printer.attribute(a))") }
      globalScale = Float(d)
    }
    if kind == .nvfp4 {
      guard mode == .local, strategy == .group else {
        return fail("input_quant = \"nvfp4\" needs input_mode = \"local\" and input_strategy = \"group\" (a calibrated global scale, group scales at run time)")
      }
      guard scale == nil else { return fail("nvfp4 inputs take 'input_global_scale', not 'input_scale'") }
      guard let globalScale else { return fail("input_quant = \"nvfp4\" needs a calibrated 'input_global_scale'") }
      return .success(.nvfp4(globalScale: globalScale))
    }
    if mode == .local || strategy == .group { return fail("input_mode = \"local\" and input_strategy = \"group\" are for input_quant = \"nvfp4\" only") }
    if globalScale != nil { return fail("'input_global_scale' is for input_quant = \"nvfp4\" only") }
    switch (mode, strategy, scale) {
    case (.dynamic, _, .some): return fail("'input_scale' is only for input_mode = \"static\" (dynamic scales are computed at run time)")
    case (.static, .token, _): return fail("input_strategy = \"token\" needs input_mode = \"dynamic\" (one scale per token cannot be calibrated)")
    case (.static, .tensor, nil): return fail("input_mode = \"static\" needs a calibrated 'input_scale'")
    default: break
    }
    return .success(InputQuantization(kind: kind, mode: mode, strategy: strategy, scale: scale))
  }

  /// The attributes that write these settings on a `linear`.
  public var attributes: [(String, Attribute)] {
    var out: [(String, Attribute)] = [
      ("input_mode", .string(mode.rawValue)), ("input_quant", .string(kind.rawValue)),
      ("input_strategy", .string(strategy.rawValue)),
    ]
    if let scale { out.append(("input_scale", .float(Double(scale)))) }
    if let globalScale { out.insert(("input_global_scale", .float(Double(globalScale))), at: 0) }
    return out
  }

  /// The symmetric per-tensor scale compressed-tensors derives from an observed range:
  /// `max(|min|, |max|) / divisor`, an exact 0 replaced by f32 epsilon.
  public static func scale(min: Float, max: Float, kind: Kind) -> Float {
    let amax = Swift.max(abs(Swift.min(min, 0)), abs(Swift.max(max, 0)))
    let s = amax / kind.scaleDivisor
    return s == 0 ? Float.ulpOfOne : s
  }
}

/// Why a `linear`'s `input_*` attributes are invalid.
public struct InputQuantizationError: Error, Sendable {
  public var message: String
}

extension Op {
  /// This op's activation quantization (nil when none or invalid; the verifier reports why).
  public var inputQuantization: InputQuantization? {
    guard kind == .linear, case .success(let q) = InputQuantization.parse(attributes) else { return nil }
    return q
  }
}
