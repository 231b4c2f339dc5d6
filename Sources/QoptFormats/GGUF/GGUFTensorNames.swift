/// The llama architecture's tensor names in GGUF (`blk.0.attn_q.weight`) and in Hugging Face
/// checkpoints (`model.layers.0.self_attn.q_proj.weight`), both ways (reference/gguf.md §3).
/// A property of the GGUF format: the GGUF frontend and backend, and llama.cpp's imatrix
/// files, all name tensors this way.
package enum GGUFTensorNames {
  private static let global: [(hf: String, gguf: String)] = [
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
  ]
  private static let perLayer: [(hf: String, gguf: String)] = [
    ("input_layernorm", "attn_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("post_attention_layernorm", "ffn_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
  ]

  /// The GGUF name of HF name `hf`, or nil when the table does not know it.
  package static func gguf(hf: String) -> String? {
    if let g = global.first(where: { $0.hf == hf }) { return g.gguf }
    guard hf.hasPrefix("model.layers.") else { return nil }
    let rest = hf.dropFirst("model.layers.".count)
    guard let dot = rest.firstIndex(of: "."), let n = Int(rest[..<dot]), n >= 0 else { return nil }
    let tail = rest[rest.index(after: dot)...]
    for (h, g) in perLayer {
      for suffix in [".weight", ".bias"] where tail == h + suffix {
        return "blk.\(n).\(g)\(suffix)"
      }
    }
    return nil
  }

  /// The HF name of GGUF name `gguf`, or nil when the table does not know it.
  package static func hf(gguf n: String) -> String? {
    if let g = global.first(where: { $0.gguf == n }) { return g.hf }
    let parts = n.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 4, parts[0] == "blk", let i = Int(parts[1]), i >= 0 else { return nil }
    guard let m = perLayer.first(where: { $0.gguf == parts[2] }),
      parts[3] == "weight" || parts[3] == "bias"
    else { return nil }
    return "model.layers.\(i).\(m.hf).\(parts[3])"
  }
}
