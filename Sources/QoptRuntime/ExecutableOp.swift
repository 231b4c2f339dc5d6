import QoptExternKernels
import QoptIR

/// An op as the runtime executes it: its kind with its attributes read and checked. The one
/// op decoder of the runtime: the interpreter (`Interpreter`, whole models on token ids) and
/// the block executor (`BlockExecutor`, one block forward and backward for calibration and
/// AutoRound) both decode ops here, so they accept the same IR and reject malformed ops with
/// the same messages. Operands stay IR values; each executor resolves them to its own storage.
package enum ExecutableOp {
  case param(name: String)
  case embedding
  /// `offset`: added to the weight (`weight_offset`; Gemma's (1 + w) norms), 0 otherwise.
  case rmsNorm(eps: Float, offset: Float)
  /// `input`: the `input_*` activation quantization applied before the matmul, if any.
  case linear(input: InputQuantization?)
  /// RoPE frequencies: `theta`, and llama3 scaling when `rope_type` asks for it; the first
  /// `rotaryDim` of each head rotate (`headDim` unless `rotary_dim` says less).
  case rope(headDim: Int, theta: Double, llama3: RopeTable.Llama3?, rotaryDim: Int)
  /// `variant`: nil for plain causal attention at 1/√d (the fast kernel), else its scale,
  /// window and soft cap.
  case attention(heads: Int, kvHeads: Int, headDim: Int, variant: AttentionVariant?)
  case silu
  case geluTanh
  case scale(Float)
  case slice(start: Int, size: Int)
  case moeRoute(topK: Int, normalize: Bool)
  case moeDispatch(expert: Int)
  case moeCombine
  case mul
  case add
  case call(callee: String)
  case dequantize
  /// An op a plugin introduced, executed by the plugin's C kernel (`ExternCall`).
  case extern
  case `return`

  /// Decodes `op`, or throws a `RuntimeError` located at it (a missing or invalid attribute,
  /// or an op the runtime does not execute).
  package init(_ op: Op) throws(RuntimeError) {
    func intAttr(_ k: String) throws(RuntimeError) -> Int {
      guard let v = op.attributes[k]?.intValue, v > 0 else {
        throw RuntimeError("needs a positive integer attribute '\(k)'", at: op)
      }
      return v
    }
    switch op.kind {
    case .param?:
      guard let name = op.paramName else { throw RuntimeError("param without a name", at: op) }
      self = .param(name: name)
    case .embedding?: self = .embedding
    case .rmsNorm?:
      self = .rmsNorm(
        eps: Float(op.attributes["eps"]?.doubleValue ?? 1e-6),
        offset: Float(op.attributes["weight_offset"]?.doubleValue ?? 0))
    case .linear?:
      switch InputQuantization.parse(op.attributes) {
      case .success(let q): self = .linear(input: q)
      case .failure(let e): throw RuntimeError(e.message, at: op)
      }
    case .rope?:
      let d = try intAttr("head_dim")
      let (theta, llama3) = try ExecutableOp.ropeFrequencies(op)
      let r = op.attributes["rotary_dim"] != nil ? try intAttr("rotary_dim") : d
      guard r <= d, r % 2 == 0 else {
        throw RuntimeError("rotary_dim \(r) must be even and at most head_dim \(d)", at: op)
      }
      self = .rope(headDim: d, theta: theta, llama3: llama3, rotaryDim: r)
    case .attention?:
      let d = try intAttr("head_dim")
      let a = op.attributes
      var variant: AttentionVariant?
      if a["scale"] != nil || a["sliding_window"] != nil || a["softcap"] != nil {
        let window = a["sliding_window"] != nil ? try intAttr("sliding_window") : nil
        variant = AttentionVariant(
          scale: Float(a["scale"]?.doubleValue ?? 1 / Double(d).squareRoot()), window: window,
          softcap: a["softcap"]?.doubleValue.map(Float.init))
      }
      self = .attention(
        heads: try intAttr("heads"), kvHeads: try intAttr("kv_heads"), headDim: d, variant: variant)
    case .silu?: self = .silu
    case .geluTanh?: self = .geluTanh
    case .scale?:
      guard let f = op.attributes["factor"]?.doubleValue else {
        throw RuntimeError("needs a float attribute 'factor'", at: op)
      }
      self = .scale(Float(f))
    case .slice?:
      guard let start = op.attributes["start"]?.intValue, start >= 0 else {
        throw RuntimeError("needs a non-negative integer attribute 'start'", at: op)
      }
      self = .slice(start: start, size: try intAttr("size"))
    case .moeRoute?:
      guard let n = op.attributes["normalize"]?.boolValue else {
        throw RuntimeError("needs a boolean attribute 'normalize'", at: op)
      }
      self = .moeRoute(topK: try intAttr("top_k"), normalize: n)
    case .moeDispatch?:
      guard let x = op.attributes["expert"]?.intValue, x >= 0 else {
        throw RuntimeError("needs a non-negative integer attribute 'expert'", at: op)
      }
      self = .moeDispatch(expert: x)
    case .moeCombine?: self = .moeCombine
    case .mul?: self = .mul
    case .add?: self = .add
    case .call?:
      guard let callee = op.callee else { throw RuntimeError("calls an unknown function", at: op) }
      self = .call(callee: callee)
    case .dequantize?: self = .dequantize
    case .return?: self = .return
    case .quantize?: throw RuntimeError("the runtime does not execute '\(op.name)'", at: op)
    case nil where op.name == ExternCall.opName: self = .extern
    case nil: throw RuntimeError("the runtime cannot execute op '\(op.name)'", at: op)
    }
  }

  private static func ropeFrequencies(_ op: Op) throws(RuntimeError) -> (Double, RopeTable.Llama3?)
  {
    let theta = op.attributes["theta"]?.doubleValue ?? 10000
    var llama3: RopeTable.Llama3?
    if let type = op.attributes["rope_type"]?.stringValue, type != "default" {
      guard type == "llama3", let f = op.attributes["factor"]?.doubleValue,
        let lo = op.attributes["low_freq_factor"]?.doubleValue,
        let hi = op.attributes["high_freq_factor"]?.doubleValue,
        let orig = op.attributes["original_max_position_embeddings"]?.intValue
      else {
        throw RuntimeError(
          "rope_type '\(type)' is not supported (supported: default, llama3 with its four parameters)",
          at: op)
      }
      llama3 = RopeTable.Llama3(
        factor: f, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositions: orig)
    }
    return (theta, llama3)
  }
}
