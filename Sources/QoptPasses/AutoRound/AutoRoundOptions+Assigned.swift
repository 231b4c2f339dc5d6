import QoptIR

extension AutoRoundOptions {
  /// The options for one weight: these, or — when its `param` carries an `assign-schemes`
  /// choice — that choice in their place; nil when the choice is `float` or a float ggml type
  /// (f16, bf16, f32: the weight is left alone).
  ///
  /// AutoRound tunes integer grids (`intB-gG`, `intB`: symmetric, the pass's `scale-dtype`)
  /// and, with `scheme=nvfp4`, NVFP4 for every weight of the run. Any other choice (a ggml
  /// block type, `fp8`, or an `int`/`nvfp4` mix) is an error naming the weight and the scheme
  /// rather than a silent quantization with the pass's own options.
  func assigned(to param: Op, name: String) throws -> AutoRoundOptions? {
    let chosen: AssignedScheme?
    switch AssignedScheme.of(param) {
    case .success(let s): chosen = s
    case .failure(let e): throw PassError(e.message, at: param.location)
    }
    guard let chosen else { return self }
    func refuse(_ why: String) -> PassError {
      PassError(
        "weight \(Printer.symbol(name)) is assigned \(chosen.spelling); \(why) (quantize it with rtn or gptq, or leave it out with ignore=)",
        at: param.location)
    }
    switch chosen {
    case .float: return nil
    case .ggml(let t) where ["f32", "f16", "bf16"].contains(t): return nil
    case .ggml:
      throw refuse("autoround tunes integer and nvfp4 grids, not ggml blocks")
    case .fp8:
      throw refuse("autoround does not tune fp8")
    case .nvfp4:
      guard quantScheme == "nvfp4" else {
        throw refuse("autoround<scheme=int> cannot tune nvfp4 weights in the same run")
      }
      return self
    case .int(let bits, let group):
      guard quantScheme == "int" else {
        throw refuse("autoround<scheme=nvfp4> cannot tune integer weights in the same run")
      }
      var o = self
      (o.bits, o.groupSize, o.sym) = (bits, group, true)
      return o
    }
  }
}
