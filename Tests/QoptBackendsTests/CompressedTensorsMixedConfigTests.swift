import Foundation
import QoptBackends
import QoptFormats
import QoptIR
import QoptPasses
import Testing

/// A mixed-precision compressed-tensors checkpoint (`assign-schemes`, then `rtn`) read the way
/// compressed-tensors applies it when transformers loads it, without torch:
///
/// - `apply_quantization_config` (quantization/lifecycle/apply.py) builds an ordered map from
///   every group's targets to its scheme (a later group wins a repeated target), takes the
///   modules `match_named_modules` yields (a target matches a module by exact name, by
///   `re:` regex matched at the start of the name, or by class name such as `Linear`; the
///   `ignore` list removes modules the same way), and gives each the scheme of the first of
///   `match_targets` (exact names, then regexes, then class names);
/// - `ModelCompressor` loads one compressor per distinct group `format` (the top-level
///   `mixed-precision` names no compressor itself), and each module decompresses with its
///   scheme's format.
///
/// So every Linear of the Hugging Face model must be ignored or matched by exactly one group,
/// and that group's `format` and `weights` must describe the tensors written for the module.
@Suite struct CompressedTensorsMixedConfigTests {
  /// The Linear modules of LlamaForCausalLM for `SyntheticLlama`, `lm_head` included (Hugging
  /// Face llama always has one, tied or not).
  static func linearModules() -> [String] {
    SyntheticLlama.linearNames().map { String($0.0.dropLast(".weight".count)) } + ["lm_head"]
  }

  /// compressed_tensors.utils.match.match_name and _match_class for a Linear module.
  static func matches(_ module: String, _ target: String) throws -> Bool {
    if target.hasPrefix("re:") {
      return try module.prefixMatch(of: Regex(String(target.dropFirst(3)))) != nil
    }
    return target == module || target == "Linear"
  }

  /// match_targets' order: exact names and regexes sorted by (is regex, text), then classes.
  static func firstTarget(_ module: String, _ targets: [String]) throws -> String? {
    let sorted = targets.sorted {
      ($0.hasPrefix("re:") ? 1 : 0, $0) < ($1.hasPrefix("re:") ? 1 : 0, $1)
    }
    for t in sorted where t != "Linear" {
      if try Self.matches(module, t) { return t }
    }
    return sorted.contains("Linear") ? "Linear" : nil
  }

  @Test func everyLinearGetsTheSchemeWrittenForIt() throws {
    let m = SyntheticLlama.make(tied: false)
    let pins = [
      "model.layers.1.mlp.down_proj.weight:nvfp4", "model.layers.0.mlp.up_proj.weight:fp8",
      "model.layers.0.self_attn.v_proj.weight:float",
    ]
    let pipeline =
      "assign-schemes<bpw=6;candidates=int4-g32,int8;overrides=\(pins.joined(separator: ","))>,rtn"
    try PassManager(threads: 1) { _ in }.run(
      PipelineParser.parse(pipeline, registry: .builtin()), on: m)
    let dir = makeTemporaryDirectory("ct-mixed-config")
    defer { removePath(dir) }
    try CompressedTensorsEmitter().emit(m, to: dir + "/out")
    let q = try #require(try JSON.parse(readFile(dir + "/out/config.json"))["quantization_config"])
    var tensors: [String: TensorData] = [:]
    for (n, d) in try SafetensorsFile(path: dir + "/out/model.safetensors").tensors {
      tensors[n] = d
    }

    #expect(q["format"] == .string("mixed-precision"))
    let groups = try #require(q["config_groups"]?.objectPairs)
    #expect(groups.count >= 4)  // int4-g32, int8, nvfp4, fp8
    let ignore = try #require(q["ignore"]?.arrayValue).compactMap(\.stringValue)
    var targetToGroup: [(String, Int)] = []  // the OrderedDict: a later group wins
    for (i, g) in groups.enumerated() {
      for t in g.1["targets"]?.arrayValue?.compactMap(\.stringValue) ?? [] {
        targetToGroup.removeAll { $0.0 == t }
        targetToGroup.append((t, i))
      }
    }
    let targets = targetToGroup.map(\.0)
    var seen: Set<Int> = []
    for module in Self.linearModules() {
      let ignored = try ignore.contains { try Self.matches(module, $0) }
      let matching = try groups.indices.filter { i in
        try (groups[i].1["targets"]?.arrayValue ?? []).contains {
          try Self.matches(module, $0.stringValue ?? "")
        }
      }
      if ignored {
        // Ignored modules load as plain Linear: a float weight, no quantization tensors.
        let w = tensors[module + ".weight"] ?? tensors["model.embed_tokens.weight"]
        #expect(w?.dtype.isFloat == true && w?.dtype != .f8e4m3, "\(module)")
        #expect(tensors[module + ".weight_scale"] == nil, "\(module)")
        continue
      }
      #expect(matching.count == 1, "\(module) is matched by groups \(matching)")
      let target = try #require(try Self.firstTarget(module, targets), "\(module) is not matched")
      let gi = try #require(targetToGroup.first { $0.0 == target }?.1)
      seen.insert(gi)
      let group = groups[gi].1
      let w = try #require(group["weights"])
      let written = try #require(m.weights.quantized(module + ".weight"), "\(module)").scheme
      try Self.expect(group, w, describe: written, tensors: tensors, module: module)
    }
    #expect(seen.count == groups.count, "every group applies to some module")
    #expect(ignore.contains("lm_head"))
    #expect(ignore.contains("model.layers.0.self_attn.v_proj"))
  }

  /// The group's `format` and `weights` against the module's scheme and its tensors.
  static func expect(
    _ group: JSON, _ w: JSON, describe scheme: QuantScheme, tensors: [String: TensorData],
    module: String
  ) throws {
    let t = { (suffix: String) in tensors[module + "." + suffix] }
    switch scheme {
    case .int(let s):
      #expect(group["format"] == .string("pack-quantized"), "\(module)")
      #expect(w["type"] == .string("int") && w["num_bits"]?.intValue == s.bits, "\(module)")
      #expect(w["symmetric"]?.boolValue == s.symmetric, "\(module)")
      #expect((t("weight_zero_point") == nil) == s.symmetric, "\(module)")
      let packed = try #require(t("weight_packed"), "\(module)")
      let scale = try #require(t("weight_scale"), "\(module)")
      let cols = packed.shape[1] * 32 / s.bits
      #expect(packed.dtype == .i32 && t("weight_shape") != nil, "\(module)")
      switch s.granularity {
      case .group(let g):
        #expect(w["strategy"] == .string("group") && w["group_size"]?.intValue == g, "\(module)")
        #expect(scale.shape[1] == cols / g, "\(module)")
      case .channel:
        #expect(w["strategy"] == .string("channel"), "\(module)")
        #expect(scale.shape[1] == 1, "\(module)")
      case .tensor:
        #expect(w["strategy"] == .string("tensor"), "\(module)")
      }
    case .nvfp4(let g):
      #expect(group["format"] == .string("nvfp4-pack-quantized"), "\(module)")
      #expect(w["type"] == .string("float") && w["num_bits"]?.intValue == 4, "\(module)")
      #expect(w["strategy"] == .string("tensor_group") && w["group_size"]?.intValue == g)
      #expect(t("weight_packed")?.dtype == .u8 && t("weight_global_scale") != nil, "\(module)")
      #expect(t("weight_scale")?.dtype == .f8e4m3, "\(module)")
    case .fp8(let g):
      #expect(group["format"] == .string("float-quantized"), "\(module)")
      #expect(w["type"] == .string("float") && w["num_bits"]?.intValue == 8, "\(module)")
      #expect(w["strategy"] == .string(g == .tensor ? "tensor" : "channel"), "\(module)")
      #expect(t("weight")?.dtype == .f8e4m3 && t("weight_scale") != nil, "\(module)")
    default:
      Issue.record("\(module): \(scheme) has no compressed-tensors form")
    }
  }
}
