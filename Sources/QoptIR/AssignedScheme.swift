/// The scheme a mixed-precision assignment (`assign-schemes`) chose for one weight, held on
/// its `param` op as `{qopt.scheme = "q4_k"}` until a quantizing pass or a backend acts on it.
///
///     %w = param @"model.layers.0.mlp.down_proj.weight" {qopt.scheme = "q6_k"} : tensor<576x1536xf32>
///
/// Two families of spellings, one per backend:
/// - a ggml type name (`q2_k` … `q6_k`, `q4_0` … `q8_0`, `iq4_nl`, `iq4_xs`, `f16`, `bf16`,
///   `f32`): the GGUF backend writes the weight in that type, as `-gguf-type-override` would;
/// - an `rtn` scheme (`int4-g64`, `int4-g128`, `int8` per channel, `nvfp4`, `fp8`, `float`):
///   `rtn` quantizes the weight that way instead of with its own options, and the
///   compressed-tensors backend writes one config group per scheme.
///
/// Every spelling is parsed here and only here (`init?(spelling:)`), so the verifier, the
/// passes and the backends agree on what is valid.
public enum AssignedScheme: Hashable, Sendable {
  /// A ggml tensor type, by its lowercase name (`GGMLType(name:)` in QoptFormats).
  case ggml(String)
  /// An integer scheme of `bits` with one f16 scale per `group` weights along a row
  /// (`-1`: per channel), symmetric, full-range.
  case int(bits: Int, group: Int)
  case nvfp4
  case fp8
  /// Left in floating point.
  case float

  /// The attribute key on a `param` op.
  public static let attribute = "qopt.scheme"

  /// The ggml types the annotation may name (`GGMLType.writable`).
  public static let ggmlNames = [
    "f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k",
    "q6_k", "iq4_nl", "iq4_xs",
  ]

  public init?(spelling s: String) {
    switch s {
    case _ where Self.ggmlNames.contains(s): self = .ggml(s)
    case "nvfp4": self = .nvfp4
    case "fp8": self = .fp8
    case "float": self = .float
    default:
      // intB (per channel) or intB-gG
      guard s.hasPrefix("int") else { return nil }
      let parts = s.dropFirst(3).split(separator: "-", omittingEmptySubsequences: false)
      guard let bits = Int(parts[0]), (2...8).contains(bits) else { return nil }
      if parts.count == 1 {
        self = .int(bits: bits, group: -1)
        return
      }
      guard parts.count == 2, parts[1].hasPrefix("g"), let g = Int(parts[1].dropFirst()), g > 0
      else { return nil }
      self = .int(bits: bits, group: g)
    }
  }

  public var spelling: String {
    switch self {
    case .ggml(let n): n
    case .int(let b, let g): g == -1 ? "int\(b)" : "int\(b)-g\(g)"
    case .nvfp4: "nvfp4"
    case .fp8: "fp8"
    case .float: "float"
    }
  }

  /// The annotation on `op` (nil when it has none), or an error message for a value that is
  /// not a scheme spelling.
  public static func of(_ op: Op) -> Result<AssignedScheme?, AssignedSchemeError> {
    guard let a = op.attributes[attribute] else { return .success(nil) }
    guard let s = a.stringValue, let scheme = AssignedScheme(spelling: s) else {
      return .failure(
        AssignedSchemeError(
          "'\(attribute)' must be a scheme spelling (\(ggmlNames.joined(separator: ", ")), intB, intB-gG, nvfp4, fp8, float), found \(Printer.attribute(a))"
        ))
    }
    return .success(scheme)
  }

  /// Every annotated weight of `module`, by weight name (the verifier has checked the values;
  /// an invalid one is skipped here).
  public static func all(in module: Module) -> [String: AssignedScheme] {
    var out: [String: AssignedScheme] = [:]
    for op in module.allOps where op.kind == .param {
      guard let name = op.paramName, case .success(let s?) = of(op) else { continue }
      out[name] = s
    }
    return out
  }
}

public struct AssignedSchemeError: Error, Sendable {
  public var message: String
  public init(_ message: String) { self.message = message }
}
