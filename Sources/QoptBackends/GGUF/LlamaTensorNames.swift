import QoptFormats
/// Hugging Face llama tensor names → GGUF names (the table is `GGUFTensorNames` in
/// QoptFormats), and the rows GGUF permutes.
package enum LlamaTensorNames {
  /// The GGUF name of `hf`; names already in GGUF form, and names the table does not know,
  /// are kept as they are.
  package static func gguf(_ hf: String) -> String {
    GGUFTensorNames.gguf(hf: hf) ?? hf
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
