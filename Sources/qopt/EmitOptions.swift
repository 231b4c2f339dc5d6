import ArgumentParser
import QoptBackends

/// `-emit=FORMAT` and its options: write the result in a packed format instead of `.ir`.
///
///     qopt -passes='rtn<bits=4;group-size=64;scale-rule=minmax>' MODEL -emit=compressed-tensors -o out/
///     qopt MODEL.gguf -emit=gguf:q4_0 -gguf-type-override='re:token_embd:q8_0' -o out.gguf
struct EmitOptions: ParsableArguments {
  @Option(
    name: .customLong("emit", withSingleDash: true),
    help: "Output format: compressed-tensors, or gguf[:q4_0|q4_1|q8_0|f16|bf16|f32] (gguf alone: exact types for quantized weights, float weights keep their dtype).")
  var format: String?

  @Option(
    name: .customLong("gguf-type-override", withSingleDash: true),
    help: "NAME_OR_RE:TYPE, the GGUF type of matching tensors (HF or GGUF name, or re:REGEX); repeatable, the last match wins.")
  var ggufTypeOverrides: [String] = []

  @Option(
    name: .customLong("max-shard-size", withSingleDash: true),
    help: "compressed-tensors: shard model.safetensors above this size (bytes, or 500MB, 5GB, 2GiB).")
  var maxShardSize: String = "5GB"

  func validate(output: String?) throws {
    guard format != nil else {
      if !ggufTypeOverrides.isEmpty { throw ValidationError("-gguf-type-override needs -emit=gguf") }
      return
    }
    _ = try emitter(threads: 1)
    if output == nil { throw ValidationError("-emit needs -o PATH") }
  }

  /// The emitter `-emit` asks for, or nil when the output is IR.
  func emitter(threads: Int) throws -> (any WeightEmitter)? {
    guard let format else { return nil }
    let parts = format.split(separator: ":", maxSplits: 1).map(String.init)
    switch parts.first {
    case "compressed-tensors"?:
      guard parts.count == 1 else { throw ValidationError("-emit=compressed-tensors takes no type") }
      guard ggufTypeOverrides.isEmpty else { throw ValidationError("-gguf-type-override needs -emit=gguf") }
      guard let size = parseShardSize(maxShardSize) else {
        throw ValidationError("-max-shard-size: '\(maxShardSize)' is not a size (bytes, or e.g. 500MB, 5GB, 2GiB)")
      }
      return CompressedTensorsEmitter(maxShardSize: size)
    case "gguf"?:
      var sel = GGUFTypeSelection()
      if parts.count == 2 {
        guard let t = GGMLType(name: parts[1]) else {
          throw ValidationError("-emit=gguf:\(parts[1]): unknown type (valid: \(GGMLType.allCases.map(\.name).joined(separator: ", ")))")
        }
        sel.defaultType = t
      }
      for o in ggufTypeOverrides {
        guard let parsed = GGUFTypeSelection.parseOverride(o) else {
          throw ValidationError("-gguf-type-override=\(o): expected NAME_OR_RE:TYPE with TYPE one of \(GGMLType.allCases.map(\.name).joined(separator: ", "))")
        }
        sel.overrides.append(parsed)
      }
      return GGUFEmitter(types: sel, threads: threads)
    default:
      throw ValidationError("-emit=\(format): unknown format (valid: compressed-tensors, gguf[:TYPE])")
    }
  }
}
