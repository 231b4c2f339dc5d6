/// Tensor names of the llama.cpp architectures beyond `llama` that qopt writes and reads
/// (qwen3, qwen3moe, gemma3): Hugging Face ↔ GGUF, as gguf-py's `tensor_mapping.py` maps them
/// for llama.cpp's converter classes (`Qwen3Model`, `Qwen3MoeModel`, `Gemma3Model`). One
/// table for the GGUF backend and the GGUF frontend.
public enum GGUFFamilyNames {
  /// Per-layer Hugging Face module paths → GGUF tensor stems for `arch`.
  public static func perLayer(arch: String) -> [String: String] {
    var m: [String: String] = [
      "input_layernorm": "attn_norm",
      "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
      "self_attn.o_proj": "attn_output",
      "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
      "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
    ]
    if arch == "gemma3" {
      // Gemma's sandwich norms (`Gemma3Model`: post_attention_norm, ffn_norm, post_ffw_norm).
      m["post_attention_layernorm"] = "post_attention_norm"
      m["pre_feedforward_layernorm"] = "ffn_norm"
      m["post_feedforward_layernorm"] = "post_ffw_norm"
    } else {
      m["post_attention_layernorm"] = "ffn_norm"
    }
    if arch == "qwen3moe" { m["mlp.gate"] = "ffn_gate_inp" }
    return m
  }

  /// Whole-model tensors (every architecture).
  public static let global: [String: String] = [
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
  ]

  /// Stacked expert tensors `blk.L.ffn_{gate,up,down}_exps` ↔ Hugging Face's per-expert
  /// `mlp.experts.E.{gate,up,down}_proj` (`Qwen2MoeModel.modify_tensors` stacks them on a new
  /// first axis, expert order).
  public static let expertStems: [String: String] = [
    "gate_proj": "ffn_gate_exps", "up_proj": "ffn_up_exps", "down_proj": "ffn_down_exps",
  ]

  /// The Hugging Face name of GGUF tensor `name` of `arch`, or nil; stacked experts are not
  /// covered (see `stackedExperts`).
  public static func hf(_ name: String, arch: String) -> String? {
    if let g = global.first(where: { $0.value == name })?.key { return g }
    let parts = name.split(separator: ".")
    guard parts.count == 4, parts[0] == "blk", let i = Int(parts[1]),
      parts[3] == "weight" || parts[3] == "bias",
      let m = perLayer(arch: arch).first(where: { $0.value == parts[2] })?.key
    else { return nil }
    return "model.layers.\(i).\(m).\(parts[3])"
  }

  /// `blk.L.ffn_X_exps.weight` as (layer, the Hugging Face projection `X_proj`), or nil.
  public static func stackedExperts(_ name: String) -> (layer: Int, projection: String)? {
    let parts = name.split(separator: ".")
    guard parts.count == 4, parts[0] == "blk", let i = Int(parts[1]), parts[3] == "weight",
      let p = expertStems.first(where: { $0.value == parts[2] })?.key
    else { return nil }
    return (i, p)
  }
}
