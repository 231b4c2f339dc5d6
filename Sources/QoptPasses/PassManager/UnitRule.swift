/// How `qopt plan` may cut a pipeline into units of decoder blocks (docs/scale-out.md), pass by
/// pass: a unit runs the whole pipeline with `-blocks=A..B`, so a pass may run in units only
/// when its result on blocks A..B does not depend on what it does to other blocks.
public enum UnitRule: Equatable, Sendable {
  /// Each selected weight on its own (`rtn` in every scheme, int, fp8 and NVFP4;
  /// `fuse-scales` and `quantize-activations`, whose sets never cross a block).
  case tensorLocal
  /// `calibrate`: a float forward whose statistics for block i depend on blocks 0..i only.
  case calibration
  /// Tuned block by block on the float model's block inputs (`autoround<quanted-input=false>`,
  /// `gptq<float-inputs>`): block i depends on the float blocks before it, not on their
  /// quantized results.
  case blockwise
  /// Changes nothing (`verify`, `print`).
  case inert
  /// Cannot run in units; the reason names the pass and the way out.
  case refused(String)

  /// The rule of one pipeline element.
  public static func of(_ invocation: PassInvocation) -> UnitRule {
    let name = invocation.pass.name
    switch name {
    case "rtn", "fuse-scales", "quantize-activations": return .tensorLocal
    case "calibrate": return .calibration
    case "verify", "print": return .inert
    case "autoround":
      guard let o = invocation.options as? AutoRoundOptions, !o.quantedInput || o.iters == 0 else {
        return .refused(
          "autoround tunes each block on the previous quantized block's outputs (quanted-input=true, the default), so block i waits for every block before it; add quanted-input=false to split it into units, or run it as one process"
        )
      }
      return o.iters == 0 ? .tensorLocal : .blockwise
    case "gptq":
      guard let o = invocation.options as? GPTQOptions, o.floatInputs else {
        return .refused(
          "gptq feeds each block the previous quantized block's outputs, so block i waits for every block before it; add float-inputs to split it into units, or run it as one process"
        )
      }
      return .blockwise
    default:
      return .refused(
        "\(name) has no rule for running in units of blocks (it may act across blocks); run the pipeline as one process"
      )
    }
  }
}
