import ArgumentParser
import QoptBackends
import QoptFormats

/// `-emit=FORMAT` and its options: write the result in a packed format instead of `.ir`.
///
///     qopt -passes='rtn<bits=4;group-size=64;scale-rule=minmax>' MODEL -emit=compressed-tensors -o out/
///     qopt MODEL.gguf -emit=gguf:q4_0 -gguf-type-override='re:token_embd:q8_0' -o out.gguf
///     qopt MODEL.gguf -o out.gguf          (the format from the name: .gguf, or .ir)
struct EmitOptions: ParsableArguments {
  @Option(
    name: .customLong("emit", withSingleDash: true),
    help: "Output format: compressed-tensors, safetensors (a float HF checkpoint, quantized weights dequantized), or gguf[:q4_0|q4_1|q8_0|f16|bf16|f32] (gguf alone: exact types for quantized weights, float weights the source's type). Without -emit, -o's extension decides: .gguf or .ir.")
  var format: String?

  @Option(
    name: .customLong("dense-dtype", withSingleDash: true),
    help: "compressed-tensors/safetensors: dtype of unquantized tensors: source (the checkpoint's own precision; f16 for a quantized GGUF source), f32, f16 or bf16.")
  var denseDType: String = "source"

  @Flag(
    name: .customLong("force", withSingleDash: true),
    help: "Replace an output directory even if it holds files qopt did not write (they are deleted).")
  var force = false

  @Option(
    name: .customLong("gguf-type-override", withSingleDash: true),
    help: "NAME_OR_RE:TYPE, the GGUF type of matching tensors (HF or GGUF name, or re:REGEX); repeatable, the last match wins.")
  var ggufTypeOverrides: [String] = []

  @Option(
    name: .customLong("max-shard-size", withSingleDash: true),
    help: "compressed-tensors: shard model.safetensors above this size (bytes, or 500MB, 5GB, 2GiB).")
  var maxShardSize: String = "5GB"

  func validate(output: String?) throws {
    guard DenseDType(rawValue: denseDType) != nil else {
      throw ValidationError("-dense-dtype=\(denseDType): unknown dtype (valid: \(DenseDType.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    guard let output else {
      if format != nil { throw ValidationError("-emit needs -o PATH") }
      if !ggufTypeOverrides.isEmpty { throw ValidationError("-gguf-type-override needs -emit=gguf") }
      return
    }
    _ = try emitter(threads: 1, output: output)
  }

  /// The format `-emit` names, or the one `-o`'s extension implies (nil: IR).
  func resolvedFormat(output: String) throws -> String? {
    if let format {
      if let why = OutputName.conflict(format: format, output: output) { throw ValidationError("-o \(output): \(why)") }
      return format
    }
    switch OutputName.format(of: output) {
    case .ir: return nil
    case .gguf: return "gguf"
    case .unknown(let why): throw ValidationError("-o \(output): \(why)")
    }
  }

  /// Refuses, before any work, a directory output that would replace files qopt did not write.
  func preflight(output: String) throws {
    guard let e = try emitter(threads: 1, output: output), e is CompressedTensorsEmitter || e is SafetensorsEmitter else { return }
    try OutputDirectory.checkReplaceable(output, force: force)
  }

  /// The emitter for `-o output`, or nil when the output is IR.
  func emitter(threads: Int, output: String) throws -> (any WeightEmitter)? {
    guard let format = try resolvedFormat(output: output) else {
      if !ggufTypeOverrides.isEmpty { throw ValidationError("-gguf-type-override needs -emit=gguf") }
      return nil
    }
    let parts = format.split(separator: ":", maxSplits: 1).map(String.init)
    // safe: validate() checked the name.
    let dense = DenseDType(rawValue: denseDType) ?? .source
    switch parts.first {
    case "compressed-tensors"?, "safetensors"?:
      guard parts.count == 1 else { throw ValidationError("-emit=\(parts[0]) takes no type") }
      guard ggufTypeOverrides.isEmpty else { throw ValidationError("-gguf-type-override needs -emit=gguf") }
      guard let size = parseShardSize(maxShardSize) else {
        throw ValidationError("-max-shard-size: '\(maxShardSize)' is not a size (bytes, or e.g. 500MB, 5GB, 2GiB)")
      }
      let command = OutputName.recordedCommand(Array(CommandLine.arguments.dropFirst()))
      if parts[0] == "safetensors" {
        return SafetensorsEmitter(maxShardSize: size, denseDType: dense, force: force, command: command)
      }
      return CompressedTensorsEmitter(maxShardSize: size, denseDType: dense, force: force, command: command)
    case "gguf"?:
      var sel = GGUFTypeSelection()
      if parts.count == 2 {
        guard let t = GGMLType(name: parts[1]) else {
          throw ValidationError("-emit=gguf:\(parts[1]): unknown type (valid: \(GGMLType.writable.map(\.name).joined(separator: ", ")))")
        }
        sel.defaultType = t
      }
      for o in ggufTypeOverrides {
        guard let parsed = GGUFTypeSelection.parseOverride(o) else {
          throw ValidationError("-gguf-type-override=\(o): expected NAME_OR_RE:TYPE with TYPE one of \(GGMLType.writable.map(\.name).joined(separator: ", "))")
        }
        sel.overrides.append(parsed)
      }
      return GGUFEmitter(types: sel, threads: threads)
    default:
      throw ValidationError("-emit=\(format): unknown format (valid: compressed-tensors, safetensors, gguf[:TYPE])")
    }
  }
}
