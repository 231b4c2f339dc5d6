import QoptIR

/// The per-column sums of x² in the order llama-imatrix adds them, for
/// `calibrate<numerics=llama.cpp>`. A sum of thousands of squares in float keeps the rounding
/// of its order, so the order is part of matching llama-imatrix bit for bit:
///
/// - llama-imatrix (llama.cpp 0.3.36) decodes `n_seq = max(1, 2048 / seqlen)` chunks at once
///   (n_batch 2048, one KV stream per chunk), and llama.cpp splits that batch into ubatches of
///   512 tokens with an equal share of every sequence (`split_equal`: with 4 chunks of 512,
///   tokens 0..<128 of chunks 0, 1, 2, 3, then tokens 128..<256 of each, …);
/// - `collect_imatrix` adds each ubatch's rows in order, `acc[j] += x[j]·x[j]` in float.
///
/// Dense linears only: an expert's rows (MoE) keep `calibrate`'s window order.
struct LlamaImatrixOrder {
  /// Tokens of the calibration windows (llama-imatrix's `-c`).
  let seqlen: Int
  private var ordered: [String: [Float]] = [:]
  /// Linears that saw rows other than whole windows (an expert's routed tokens).
  private var unordered: Set<String> = []

  init(seqlen: Int) { self.seqlen = seqlen }

  /// The sums of linear `name` in llama-imatrix's order; nil for a linear that saw rows other
  /// than whole windows (the caller keeps its window-order sums).
  func sums(_ name: String) -> [Float]? { unordered.contains(name) ? nil : ordered[name] }

  /// Chunks llama-imatrix decodes together.
  var sequencesPerBatch: Int { max(1, 2048 / seqlen) }
  /// A `calibrate` batch size (windows per forward) that starts every llama.cpp batch at a
  /// forward's first window: a multiple of `sequencesPerBatch`, about 8.
  var forwardBatch: Int { sequencesPerBatch * max(1, 8 / sequencesPerBatch) }

  /// Adds the input rows of linear `name` for `rows / seqlen` consecutive windows, the first of
  /// which starts a llama.cpp batch. Returns false (nothing added) for rows that are not whole
  /// windows (an expert's routed tokens), and marks the linear unordered.
  mutating func add(_ name: String, _ x: UnsafePointer<Float>, rows: Int, columns: Int) -> Bool {
    guard rows % seqlen == 0 else {
      unordered.insert(name)
      return false
    }
    var acc = ordered[name] ?? [Float](repeating: 0, count: columns)
    let windows = rows / seqlen
    acc.withUnsafeMutableBufferPointer { a in
      for g0 in stride(from: 0, to: windows, by: sequencesPerBatch) {
        let n = min(sequencesPerBatch, windows - g0)
        let share = max(1, min(seqlen, 512 / n))  // each sequence's tokens per ubatch
        for t0 in stride(from: 0, to: seqlen, by: share) {
          for s in g0..<(g0 + n) {
            for t in t0..<min(t0 + share, seqlen) {
              let xr = x + ((s * seqlen) + t) * columns
              for j in 0..<columns { a[j] += xr[j] * xr[j] }
            }
          }
        }
      }
    }
    ordered[name] = acc
    return true
  }

  /// Whether llama.cpp holds this model's Q/K head dimensions in adjacent pairs: its `llama`
  /// architecture (HF `llama`, `mistral`, or no config) permutes them so; the NeoX-RoPE
  /// architectures (Qwen, Gemma, …) keep HF's halves.
  static func interleavedQK(_ module: Module) -> Bool {
    guard let text = module.attributes["hf_config"]?.stringValue,
      let type = (try? JSON.parse(text))?["model_type"]?.stringValue
    else { return true }
    return type == "llama" || type == "mistral"
  }
}
