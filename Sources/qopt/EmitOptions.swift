import ArgumentParser
import QoptBackends
import QoptFormats

/// `-emit=FORMAT` and its options: write the result in a packed format instead of `.ir`.
///
///     qopt -passes='rtn<bits=4;group-size=64;scale-rule=minmax>' MODEL -emit=compressed-tensors -o out/
///     qopt MODEL.gguf -emit=gguf:q4_k_m -gguf-type-override='re:attn_v:q8_0' -o out.gguf
///     qopt MODEL.gguf -o out.gguf          (the format from the name: .gguf, or .ir)
struct EmitOptions: ParsableArguments {
  @Option(
    name: .customLong("emit", withSingleDash: true),
    help:
      "Output format: compressed-tensors, safetensors (a float HF checkpoint, quantized weights dequantized), or gguf[:MIX|f16|bf16|f32] with MIX one of llama-quantize's: q2_k, q2_k_s, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, q4_0, q4_1, q5_0, q5_1, q8_0, iq4_nl, iq4_xs (any case; per-tensor types as llama-quantize chooses them). gguf alone: exact types for quantized weights, float weights the source's type. Without -emit, -o's extension decides: .gguf or .ir."
  )
  var format: String?

  @Option(
    name: .customLong("dense-dtype", withSingleDash: true),
    help:
      "compressed-tensors/safetensors: dtype of unquantized tensors: source (the checkpoint's own precision; f16 for a quantized GGUF source), f32, f16 or bf16."
  )
  var denseDType: String = "source"

  @Flag(
    name: .customLong("force", withSingleDash: true),
    help:
      "Replace an output directory even if it holds files qopt did not write (they are deleted).")
  var force = false

  @Option(
    name: .customLong("gguf-type-override", withSingleDash: true),
    help:
      "NAME_OR_RE:TYPE, the GGUF type of matching tensors (HF or GGUF name, or re:REGEX, a search); repeatable, the last match wins. With a mix this is llama-quantize's --tensor-type: the tensor skips the mix's rules, then takes its row-length fallback."
  )
  var ggufTypeOverrides: [String] = []

  /// Whether any GGUF-only option was given (they need -emit=gguf).
  var hasGGUFOptions: Bool { !ggufTypeOverrides.isEmpty || ggufPure || ggufLeaveOutputTensor }

  @Flag(
    name: .customLong("gguf-pure", withSingleDash: true),
    help:
      "With -emit=gguf:MIX: every quantizable tensor takes the mix's base type (llama-quantize --pure), then its row-length fallback."
  )
  var ggufPure = false

  @Flag(
    name: .customLong("gguf-leave-output-tensor", withSingleDash: true),
    help:
      "With -emit=gguf:MIX: output.weight keeps its source type (llama-quantize --leave-output-tensor)."
  )
  var ggufLeaveOutputTensor = false

  @Option(
    name: .customLong("max-shard-size", withSingleDash: true),
    help:
      "compressed-tensors: shard model.safetensors above this size (bytes, or 500MB, 5GB, 2GiB).")
  var maxShardSize: String = "5GB"

  func validate(output: String?) throws {
    guard DenseDType(rawValue: denseDType) != nil else {
      throw ValidationError(
        "-dense-dtype=\(denseDType): unknown dtype (valid: \(DenseDType.allCases.map(\.rawValue).joined(separator: ", ")))"
      )
    }
    guard let output else {
      if format != nil { throw ValidationError("-emit needs -o PATH") }
      if hasGGUFOptions { throw ValidationError("-gguf-* options need -emit=gguf") }
      return
    }
    _ = try emitter(threads: 1, output: output)
  }

  /// The format `-emit` names, or the one `-o`'s extension implies (nil: IR).
  func resolvedFormat(output: String) throws -> String? {
    if let format {
      if let why = OutputName.conflict(format: format, output: output) {
        throw ValidationError("-o \(output): \(why)")
      }
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
    guard let e = try emitter(threads: 1, output: output),
      e is CompressedTensorsEmitter || e is SafetensorsEmitter
    else { return }
    try OutputDirectory.checkReplaceable(output, force: force)
  }

  /// The emitter for `-o output`, or nil when the output is IR.
  /// `command` is what a directory output's manifest records (default: this process's
  /// arguments; `qopt merge` passes the equivalent single-process command).
  func emitter(
    threads: Int, output: String, command: [String]? = nil
  ) throws -> (any WeightEmitter)? {
    guard let format = try resolvedFormat(output: output) else {
      if hasGGUFOptions { throw ValidationError("-gguf-* options need -emit=gguf") }
      return nil
    }
    let parts = format.split(separator: ":", maxSplits: 1).map(String.init)
    // safe: validate() checked the name.
    let dense = DenseDType(rawValue: denseDType) ?? .source
    switch parts.first {
    case "compressed-tensors"?, "safetensors"?:
      guard parts.count == 1 else { throw ValidationError("-emit=\(parts[0]) takes no type") }
      guard !hasGGUFOptions else { throw ValidationError("-gguf-* options need -emit=gguf") }
      guard let size = parseShardSize(maxShardSize) else {
        throw ValidationError(
          "-max-shard-size: '\(maxShardSize)' is not a size (bytes, or e.g. 500MB, 5GB, 2GiB)")
      }
      let command = OutputName.recordedCommand(command ?? Array(CommandLine.arguments.dropFirst()))
      if parts[0] == "safetensors" {
        return SafetensorsEmitter(
          maxShardSize: size, denseDType: dense, force: force, command: command)
      }
      return CompressedTensorsEmitter(
        maxShardSize: size, denseDType: dense, force: force, command: command)
    case "gguf"?:
      var sel = GGUFTypeSelection()
      if parts.count == 2 {
        if let mix = LlamaMix(name: parts[1]) {
          sel.mix = mix
        } else if let t = GGMLType(name: parts[1]), !t.isQuantized {
          sel.defaultType = t
        } else {
          let valid = LlamaMix.allCases.map(\.rawValue) + ["f16", "bf16", "f32"]
          throw ValidationError(
            "-emit=gguf:\(parts[1]): unknown type (valid: \(valid.joined(separator: ", ")))")
        }
      }
      if (ggufPure || ggufLeaveOutputTensor) && sel.mix == nil {
        throw ValidationError(
          "\(ggufPure ? "-gguf-pure" : "-gguf-leave-output-tensor") needs -emit=gguf:MIX (a llama-quantize type such as q4_k_m)"
        )
      }
      sel.pure = ggufPure
      sel.leaveOutputTensor = ggufLeaveOutputTensor
      for o in ggufTypeOverrides {
        guard let parsed = GGUFTypeSelection.parseOverride(o) else {
          throw ValidationError(
            "-gguf-type-override=\(o): expected NAME_OR_RE:TYPE with TYPE one of \(GGMLType.writable.map(\.name).joined(separator: ", "))"
          )
        }
        sel.overrides.append(parsed)
      }
      var emitter = GGUFEmitter(types: sel, threads: threads)
      emitter.remark = { stderrWrite("remark: \($0)\n") }
      return emitter
    default:
      throw ValidationError(
        "-emit=\(format): unknown format (valid: compressed-tensors, safetensors, gguf[:TYPE])")
    }
  }
}
