import QoptIR

extension RTNOptions {
  /// The options for one weight: these, or — when its `param` carries an `assign-schemes`
  /// choice (`{qopt.scheme = "int8"}`) — that scheme in their place; nil when the choice is
  /// `float` or a float ggml type (the weight stays as it is).
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
      // A ggml block type quantizes in the IR (`!q.ggml<…>`), and the GGUF backend writes
      // those blocks as they are; f32/f16/bf16 stay float for the backend to write.
      guard let block = RTNScheme(rawValue: t), block.ggml != nil else { return nil }
      o.scheme = block
    }
    return o
  }
}
