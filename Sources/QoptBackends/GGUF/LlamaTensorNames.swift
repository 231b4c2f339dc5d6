import QoptFormats
/// Hugging Face llama tensor names → GGUF names (reference/gguf.md §3).
package enum LlamaTensorNames {
  private static let global: [String: String] = [
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
  ]
  private static let perLayer: [(String, String)] = [
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

  /// The GGUF name of `hf`; names already in GGUF form, and names the table does not know,
  /// are kept as they are.
  package static func gguf(_ hf: String) -> String {
    if let g = global[hf] { return g }
    guard hf.hasPrefix("model.layers.") else { return hf }
    let rest = hf.dropFirst("model.layers.".count)
    guard let dot = rest.firstIndex(of: "."), let n = Int(rest[..<dot]) else { return hf }
    let tail = rest[rest.index(after: dot)...]
    for (h, g) in perLayer {
      for suffix in [".weight", ".bias"] where tail == h + suffix { return "blk.\(n).\(g)\(suffix)" }
    }
    return hf
  }

  /// Which heads permutation the tensor needs: `.q` for attn_q, `.k` for attn_k.
  package enum Rotary { case q, k }
  package static func rotary(gguf name: String) -> Rotary? {
    if name.hasSuffix(".attn_q.weight") || name.hasSuffix(".attn_q.bias") { return .q }
    if name.hasSuffix(".attn_k.weight") || name.hasSuffix(".attn_k.bias") { return .k }
    return nil
  }

  /// Row order HF → GGUF for `heads` heads of `headDim` rows: GGUF row `h·d + 2i + j` takes
  /// HF row `h·d + j·(d/2) + i` (`W.reshape(n_head, 2, d/2, in).swapaxes(1, 2)`).
  package static func permutation(rows: Int, heads: Int) -> [Int]? {
    guard heads > 0, rows % heads == 0, (rows / heads) % 2 == 0 else { return nil }
    let d = rows / heads
    var order = [Int](repeating: 0, count: rows)
    for h in 0..<heads {
      for i in 0..<(d / 2) {
        for j in 0..<2 { order[h * d + 2 * i + j] = h * d + j * (d / 2) + i }
      }
    }
    return order
  }
}
