/// One operation: a mnemonic, operands, at most one result and typed attributes.
///
/// Known ops (see `OpKind`) print in their custom form; any other name (a plugin's op) prints
/// in the generic form `"name"(%a) {attrs} : (T) -> T` and round-trips all the same.
public final class Op {
  public var name: String
  public var operands: [Value]
  public private(set) var result: Value?
  public var attributes: AttributeDict
  /// Where the op was parsed from; `nil` for ops built in memory.
  public var location: SourceLocation?
  public internal(set) weak var parent: Function?

  public init(
    _ name: String, operands: [Value] = [], result: Value? = nil,
    attributes: AttributeDict = AttributeDict(), location: SourceLocation? = nil
  ) {
    self.name = name
    self.operands = operands
    self.attributes = attributes
    self.location = location
    setResult(result)
  }

  /// Replaces the result value (the old one, if any, is detached).
  public func setResult(_ value: Value?) {
    result?.definingOp = nil
    result = value
    value?.definingOp = self
  }

  /// The known op this is, or `nil` for a generic (plugin) op.
  public var kind: OpKind? { OpKind(rawValue: name) }

  /// The weight name of a `param` op.
  public var paramName: String? { kind == .param ? attributes["name"]?.symbolValue : nil }
  /// The callee of a `call` op.
  public var callee: String? { kind == .call ? attributes["callee"]?.symbolValue : nil }

  /// A short description for diagnostics on ops that have no source location.
  public var path: String {
    let fn = parent.map { "@\($0.name)" } ?? "<detached>"
    let idx = parent?.body.firstIndex(where: { $0 === self }).map { "#\($0)" } ?? ""
    return "\(fn) op \(idx) '\(name)'"
  }
}

/// The op set of the IR. Each has a verifier rule in `Verifier/OpRules.swift`.
public enum OpKind: String, CaseIterable, Sendable {
  /// A named tensor in the weight store: `%w = param @"name" : tensor<…>`.
  case param
  /// Row lookup: `embedding %ids, %table`.
  case embedding
  /// `rms_norm %x, %w {eps [, weight_offset]}`: normalises each run of `len(w)` elements of a
  /// row (the whole row, or one head for Qwen3/Gemma 3's q/k norm over `[T, heads·d]`) and
  /// multiplies by `weight_offset + w` (Gemma's `(1 + w)` norms keep the checkpoint's `w`).
  case rmsNorm = "rms_norm"
  /// `y = x · Wᵀ (+ b)`: `linear %x, %w [, %b]`.
  case linear
  /// Rotary position embedding, rotate-half convention: `rope %x {head_dim, theta}`; with
  /// `rotary_dim` only the first `rotary_dim` of each head rotate (Phi-3's partial rotary).
  case rope
  /// Causal grouped-query attention: `attention %q, %k, %v {heads, kv_heads, head_dim}`, with
  /// optional `scale` (default 1/√head_dim), `sliding_window` (each query sees its last N
  /// keys) and `softcap` (scores → c·tanh(s/c)).
  case attention
  case silu
  /// `gelu_tanh %x`: GELU with the tanh approximation (`gelu_pytorch_tanh`).
  case geluTanh = "gelu_tanh"
  /// `scale %x {factor}`: `x · factor` (Gemma's embedding scale √hidden).
  case scale
  /// `slice %x {start, size}`: columns `start ..< start+size` of `[T, N]` (the groups of a fused
  /// projection such as Phi-3's `qkv_proj`).
  case slice
  /// `moe_route %logits {top_k, normalize}`: router logits `[T, E]` → combine weights `[T, E]`,
  /// softmax over the experts, zero outside each token's top-k, and (`normalize`) the kept ones
  /// renormalised to sum 1. A token is routed to expert e iff its weight is non-zero.
  case moeRoute = "moe_route"
  /// `moe_dispatch %x, %route {expert}`: the rows of `x` routed to `expert` → `[T_e, D]`.
  case moeDispatch = "moe_dispatch"
  /// `moe_combine %route, %y0, …, %y(E−1)`: `out[t] = Σ_e route[t, e] · y_e[row of t in e]`,
  /// experts in ascending order.
  case moeCombine = "moe_combine"
  case mul
  case add
  /// `call @f(%a, …)`.
  case call
  /// Function terminator.
  case `return`
  /// Explicit weight quantization: float tensor → quantized tensor of the same shape.
  case quantize
  /// Quantized tensor → float tensor of the same shape.
  case dequantize
}
