import QoptIR

/// The `quantization_config` object of a compressed-tensors config.json, written with the keys
/// and values compressed-tensors 0.19.0 writes (reference/compressed-tensors.md §1): keys in
/// sorted order, `QuantizationArgs` with the reference field set.
package enum QuantizationConfig {
  package static let version = "0.19.0"

  /// The `weights` QuantizationArgs of an integer weight-only scheme.
  package static func weightArgs(_ s: IntScheme) -> JSON {
    let (groupSize, strategy): (JSON, String) = switch s.granularity {
    case .group(let g): (.int(g), "group")
    case .channel: (.int(-1), "channel")
    case .tensor: (.null, "tensor")
    }
    return .object([
      ("actorder", .null),
      ("block_structure", .null),
      ("dynamic", .bool(false)),
      ("group_size", groupSize),
      ("num_bits", .int(s.bits)),
      ("observer", .string("memoryless_minmax")),
      ("observer_kwargs", .object([])),
      ("scale_dtype", .null),
      ("strategy", .string(strategy)),
      ("symmetric", .bool(s.symmetric)),
      ("type", .string("int")),
      ("zp_dtype", s.symmetric ? .null : .string("torch.int8")),
    ])
  }

  /// The `weights` QuantizationArgs of NVFP4A16 (reference/compressed-tensors.md §1, §6).
  package static let nvfp4WeightArgs: JSON = .object([
    ("actorder", .null),
    ("block_structure", .null),
    ("dynamic", .bool(false)),
    ("group_size", .int(16)),
    ("num_bits", .int(4)),
    ("observer", .string("memoryless_minmax")),
    ("observer_kwargs", .object([])),
    ("scale_dtype", .string("torch.float8_e4m3fn")),
    ("strategy", .string("tensor_group")),
    ("symmetric", .bool(true)),
    ("type", .string("float")),
    ("zp_dtype", .null),
  ])

  /// The `weights` QuantizationArgs of FP8 E4M3 weights (the weight half of FP8_DYNAMIC).
  package static func fp8WeightArgs(_ g: Granularity) -> JSON {
    let (groupSize, strategy): (JSON, String) = switch g {
    case .group(let n): (.int(n), "group")
    case .channel: (.null, "channel")
    case .tensor: (.null, "tensor")
    }
    return .object([
      ("actorder", .null), ("block_structure", .null), ("dynamic", .bool(false)), ("group_size", groupSize),
      ("num_bits", .int(8)), ("observer", .string("memoryless_minmax")), ("observer_kwargs", .object([])),
      ("scale_dtype", .null), ("strategy", .string(strategy)), ("symmetric", .bool(true)), ("type", .string("float")),
      ("zp_dtype", .null),
    ])
  }

  /// The `weights` QuantizationArgs of int8 `int-quantized` weights (the weight half of W8A8,
  /// data/formats/w8a8-int8.md: per channel with `group_size` null).
  package static func int8WeightArgs(_ g: Granularity) -> JSON {
    .object([
      ("actorder", .null), ("block_structure", .null), ("dynamic", .bool(false)), ("group_size", .null),
      ("num_bits", .int(8)), ("observer", .string("memoryless_minmax")), ("observer_kwargs", .object([])),
      ("scale_dtype", .null), ("strategy", .string(g == .tensor ? "tensor" : "channel")), ("symmetric", .bool(true)),
      ("type", .string("int")), ("zp_dtype", .null),
    ])
  }

  /// The `input_activations` QuantizationArgs of an 8-bit input quantization (its scale
  /// ignored): dynamic ones have no observer, static ones llmcompressor's `static_minmax`.
  package static func inputArgs(_ q: InputQuantization) -> JSON {
    .object([
      ("actorder", .null), ("block_structure", .null), ("dynamic", .bool(q.mode == .dynamic)), ("group_size", .null),
      ("num_bits", .int(8)), ("observer", q.mode == .dynamic ? .null : .string("static_minmax")),
      ("observer_kwargs", .object([])), ("scale_dtype", .null), ("strategy", .string(q.strategy.rawValue)),
      ("symmetric", .bool(true)), ("type", .string(q.kind == .fp8 ? "float" : "int")), ("zp_dtype", .null),
    ])
  }

  /// The `input_activations` QuantizationArgs of NVFP4 inputs (W4A4, the `NVFP4` preset):
  /// a static global scale, group scales computed at run time (`dynamic: "local"`).
  package static let nvfp4InputArgs: JSON = .object([
    ("actorder", .null), ("block_structure", .null), ("dynamic", .string("local")), ("group_size", .int(16)),
    ("num_bits", .int(4)), ("observer", .string("static_minmax")), ("observer_kwargs", .object([])),
    ("scale_dtype", .string("torch.float8_e4m3fn")), ("strategy", .string("tensor_group")), ("symmetric", .bool(true)),
    ("type", .string("float")), ("zp_dtype", .null),
  ])

  /// A config group's scheme: integer pack-quantized, NVFP4 (weights only, or W4A4), FP8 weights (with or without FP8
  /// input activations), or int8 weights with int8 input activations (W8A8). Input settings
  /// are kept without their scale, so linears differing only in static scales share a group.
  package enum GroupScheme: Hashable {
    case int(IntScheme)
    case nvfp4
    case nvfp4a4
    case fp8(Granularity, InputQuantization?)
    case int8(Granularity, InputQuantization)

    package var format: String {
      switch self {
      case .int: "pack-quantized"
      case .nvfp4, .nvfp4a4: "nvfp4-pack-quantized"
      case .fp8: "float-quantized"
      case .int8: "int-quantized"
      }
    }
    package var weights: JSON {
      switch self {
      case .int(let s): QuantizationConfig.weightArgs(s)
      case .nvfp4, .nvfp4a4: QuantizationConfig.nvfp4WeightArgs
      case .fp8(let g, _): QuantizationConfig.fp8WeightArgs(g)
      case .int8(let g, _): QuantizationConfig.int8WeightArgs(g)
      }
    }
    package var inputActivations: JSON {
      switch self {
      case .int, .nvfp4, .fp8(_, nil): .null
      case .nvfp4a4: QuantizationConfig.nvfp4InputArgs
      case .fp8(_, let q?), .int8(_, let q): QuantizationConfig.inputArgs(q)
      }
    }
  }

  /// One config group per distinct scheme (`group_0`, …); a single group targets `Linear`,
  /// several list their module names. The top-level format is the groups' common format, or
  /// `mixed-precision`.
  package static func make(
    groups: [(scheme: GroupScheme, modules: [String])], ignore: [String]
  ) -> JSON {
    var cg: [(String, JSON)] = []
    let formats = Set(groups.map(\.scheme.format))
    let format = formats.count == 1 ? formats.first ?? "pack-quantized" : "mixed-precision"
    for (i, g) in groups.enumerated() {
      let targets: [JSON] = groups.count == 1 ? [.string("Linear")] : g.modules.map { .string($0) }
      cg.append((
        "group_\(i)",
        .object([
          ("format", .string(g.scheme.format)),
          ("input_activations", g.scheme.inputActivations),
          ("output_activations", .null),
          ("targets", .array(targets)),
          ("weights", g.scheme.weights),
        ])
      ))
    }
    return .object([
      ("config_groups", .object(cg)),
      ("format", .string(format)),
      ("global_compression_ratio", .null),
      ("ignore", .array(ignore.map { .string($0) })),
      ("kv_cache_scheme", .null),
      ("quant_method", .string("compressed-tensors")),
      ("quantization_status", .string("compressed")),
      ("sparsity_config", .object([])),
      ("transform_config", .object([])),
      ("version", .string(version)),
    ])
  }
}

extension JSON {
  /// An IR attribute as a config.json value (`nil` for types, which have no JSON form).
  package init?(attribute a: Attribute) {
    switch a {
    case .int(let v): self = .int(v)
    case .float(let v): self = .double(v)
    case .bool(let v): self = .bool(v)
    case .string(let v), .symbol(let v): self = .string(v)
    case .array(let xs):
      var out: [JSON] = []
      for x in xs {
        guard let j = JSON(attribute: x) else { return nil }
        out.append(j)
      }
      self = .array(out)
    case .type: return nil
    }
  }

  /// `self` (an object) with `key` set, replacing an existing value in place.
  package func setting(_ key: String, _ value: JSON) -> JSON {
    guard var pairs = objectPairs else { return self }
    if let i = pairs.firstIndex(where: { $0.0 == key }) { pairs[i].1 = value } else { pairs.append((key, value)) }
    return .object(pairs)
  }

  /// `self` (an object) without `key`.
  package func removing(_ key: String) -> JSON {
    guard let pairs = objectPairs else { return self }
    return .object(pairs.filter { $0.0 != key })
  }
}
