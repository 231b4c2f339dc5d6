import QoptIR

/// How `assign-schemes` scores a candidate.
enum SchemeScore: String, Sendable, CaseIterable {
  /// `Σ_j imp_j Σ_rows (w − q)²` with the imatrix's mean x² per input column.
  case weightedError = "weighted-error"
  /// The weighted error scaled per weight by a measured end-to-end KL (`kl-windows`).
  case kl
}

/// Options of `assign-schemes`.
struct AssignSchemesOptions: PassOptions {
  var bpw: Double? = nil
  var size: Int = 0
  var candidates = ["gguf"]
  var score = SchemeScore.weightedError
  var targets = ["auto"]
  var ignore: [String] = []
  var overrides: [String] = []
  var klWindows = 2
  var klSeqlen = 128

  init() {}
  static let schema: [OptionField<AssignSchemesOptions>] = [
    .optionalDouble(
      "bpw", \.bpw,
      "target bits per weight over the assigned weights: Σ emitted bytes × 8 / Σ elements",
      in: 0.5...32),
    .int(
      "size", \.size,
      "target bytes instead of bpw: the tensor data of the whole output (assigned weights, pinned ones, every other weight at 4 bytes per 1-D element or its stored size); 0: use bpw",
      in: 0...Int.max),
    .list(
      "candidates", \.candidates,
      "gguf (q2_k…q8_0, iq4_nl), ct (int4-g128, int4-g64, int8), or scheme spellings (q4_k, int4-g64, int8, nvfp4, fp8, float, …)"
    ),
    .choice(
      "score", \.score,
      "weighted-error: importance-weighted quantization error; kl: that error scaled per weight by the KL of the logits with only that weight quantized (needs calibrate)"
    ),
    .list(
      "targets", \.targets,
      "auto: every 2-D weight the backend quantizes (gguf: linears and the embedding/output; ct: Linear), or names / re: regexes"
    ),
    .list(
      "ignore", \.ignore, "names or re: regexes of weights to leave unassigned (each must match)"),
    .list(
      "overrides", \.overrides,
      "NAME_OR_RE:SCHEME pins (re: searched in the name; the last match wins), counted in the budget"
    ),
    .int("kl-windows", \.klWindows, "score=kl: calibration windows per measurement", in: 1...64),
    .int("kl-seqlen", \.klSeqlen, "score=kl: tokens per window (a prefix of each)", in: 2...8192),
  ]
}

let assignSchemesDetails = """
  Chooses one scheme per weight from `candidates` so that the total damage is least with the
  emitted bytes within the budget, and writes the choice on the weight's `param` as
  `{qopt.scheme = "q6_k"}` (`AssignedScheme`). The GGUF backend writes each annotated weight in
  its type, as `-gguf-type-override` would (a command-line override still wins); `rtn`
  quantizes an annotated weight with its scheme (`int4-g64`, `int8`, `fp8`, `nvfp4`; `float`
  leaves it) instead of its own options, and the compressed-tensors backend writes one
  config group per scheme.

  - **Candidates**: a ggml type whose block does not divide the row is replaced by llama.cpp's
    fallback (q4_k → q5_0 on a 576-wide row), so the annotation is the type written; a scheme
    that cannot hold the row (an int group or nvfp4's 16 not dividing it) is dropped.
  - **Size**: the exact tensor bytes the backend writes (GGUF blocks; compressed-tensors
    packed words, f16 scales and the 16-byte `weight_shape`). `bpw` counts the assigned
    weights only: `Σ bytes × 8 / Σ elements ≤ bpw`. `size=BYTES` is a whole-output target
    without the file header: assigned weights, pinned ones, 1-D weights at 4 bytes per element
    (GGUF keeps norms in f32) and ignored 2-D weights at their stored size.
  - **Damage** (`score=weighted-error`): `Σ_j imp_j Σ_rows (w − q)²`, q the weight encoded as
    the backend encodes it (llama.cpp's importance-weighted encoders when the module has an
    importance matrix) and decoded; imp_j the importance matrix's mean x² of input column j
    (1 where a weight has none). `score=kl` multiplies each weight's errors by
    `KL_w / error(w, c₀)`, with c₀ its smallest candidate and `KL_w` the mean KL divergence of
    the next-token distributions when only w is c₀ and the rest float, over `kl-windows`
    calibration windows of `kl-seqlen` tokens (one forward per weight; the float logits are
    computed once).
  - **Solver**: exact multiple-choice knapsack (`SchemeKnapsack`, dynamic programming over
    the size axis in units of the sizes' greatest common divisor; no rounding). Ties: least
    damage, then least size, then the earliest candidate of the last weight, and so on.
    A budget below every weight at its smallest candidate is an error.
  - **Pins**: `ignore` leaves weights unassigned; `overrides=NAME:SCHEME` fixes a weight's
    scheme (counted in the budget); an existing `qopt.scheme` is kept as a pin.
  - **Report**: a remark with the count per scheme, the achieved bpw and bytes against the
    budget; module attributes `assign_schemes.bpw` and `assign_schemes.bytes`, which the run
    summary prints; `-print-after=assign-schemes` shows every weight's annotation.
  """
