import QoptIR

extension RTNOptions {
  /// The options for one weight: these, or — when its `param` carries an `assign-schemes`
  /// choice (`{qopt.scheme = "int8"}`) — that scheme in their place; nil when the choice is
  /// `float` (the weight stays as it is).
  func assigned(to param: Op, name: String) throws -> RTNOptions? {
    let chosen: AssignedScheme?
    switch AssignedScheme.of(param) {
    case .success(let s): chosen = s
    case .failure(let e): throw PassError(e.message, at: param.location)
    }
    guard let chosen else { return self }
    var o = self
    switch chosen {
    case .float: return nil
    case .fp8:
      o.scheme = .fp8
      o.groupSize = -1
    case .nvfp4:
      o.scheme = .nvfp4
      o.groupSize = nil
    case .int(let bits, let group):
      (o.scheme, o.bits, o.sym, o.groupSize) = (.int, bits, true, group)
    case .ggml(let t):
      throw PassError(
        "weight \(Printer.symbol(name)) is assigned the ggml type \(t); emit it with -emit=gguf instead of quantizing it in the IR",
        at: param.location)
    }
    return o
  }
}
