import QoptIR

/// `gptq`: GPTQ block by block (`GPTQSolver`, `GPTQRun`). Each selected linear's weights are
/// rounded column by column onto the grid `rtn` would use, each column's error compensated on
/// the columns not yet rounded through the inverse Hessian of the linear's calibration inputs;
/// codes and scales land in the IR as `rtn` writes them.
///
///     %w = param @"blk.0.ffn_up.weight" : tensor<1536x576xf32>
///   ->
///     %w = param @"blk.0.ffn_up.weight" : tensor<1536x576x!q.int<4, sym, group=64, scale=f16>>
let gptqPass = Pass(
  "gptq", summary: "GPTQ: Hessian-compensated rounding, block by block", details: gptqDetails,
  options: GPTQOptions.self,
  plan: { module, options, plan in try options.weights.plan(module, &plan, each: true) }
) { module, options, context in
  try GPTQRun(module: module, options: options, context: context).run()
}

let gptqDetails = """
  GPTQ (Frantar et al. 2022) as llm-compressor's `GPTQModifier` runs it, for every scheme `rtn`
  writes (`scheme=int` with either scale rule, `nvfp4`, `fp8`; the weight options are `rtn`'s).
  For each block called by `@main`, in order:

  1. the block runs on its inputs (the float embeddings for the first block, the previous
     quantized block's outputs after that) and every selected linear's input rows X give
     `H = 2·XᵀX / n` (linears reading the same value share one H; one block's Hessians are in
     memory at a time); with `sink-weight` the first token of each window (the attention sink)
     counts that many times (`GPTQHessian`; 1, the reference's H, by default);
  2. per linear: dead inputs (`H_jj = 0`) get `H_jj = 1` and zero weights; `H += damp ·
     mean(diag H) · I`; `U = chol(H⁻¹)ᵀ` (f64 LAPACK; if H is still not positive definite the
     weight is rounded to nearest, with a warning); columns are rounded in order (by
     descending `H_jj` with `act-order`) and each column's error `e = (w − q) / U_ii` updates
     the later columns by `−e · U_i,j`, immediately inside a block of `block-size` columns and
     by one sgemm for the rest;
  3. group scales are fitted when a group's first column is reached, from the values it holds
     then: for int sym full-range by default (`search-scale`) with auto-round's
     importance-weighted search (`rtn<weighted>`'s) weighted by `H_jj`, otherwise (and with
     `no-search-scale`) by `rtn`'s rule for the scheme; `static-groups` (implied by `act-order`, which
     keeps the groups contiguous) fits them all first from the original weights. NVFP4's global
     scale is fixed first: the smallest over the selected linears reading the same input, so
     `fuse-scales` keeps the codes;
  4. the rounded weights replace the float ones in the block, and its outputs on the same
     inputs become the next block's inputs.

  With `float-inputs` every block's H is a sum over calibration windows, so `calibrate`'s
  data shards split it too (`calibrate<data-shards=N>`; docs/scale-out.md): H's sums are
  accumulated per shard (no forward batch crossing a shard's end) and added in shard order.
  Under `calibrate<…;shard=K;partials=DIR>` gptq forwards shard K's windows only, writes each
  selected input's sums to `DIR/gptq-shard-K-of-N/<input>.hessian` (a JSON header line, then
  the upper triangle as raw little-endian f32) and rounds nothing; under `partials=DIR` alone
  it reads the N partials (refusing a missing one, or one made for other data, shards, block,
  `sink-weight` or `batch-size`), adds them and solves without forwarding. One process over N
  shards gives the same bits. Refused with data shards: no `float-inputs`, `true-sequential`;
  in a shard's run, after `awq` or `smoothquant` (scales from that shard's statistics alone).

  Needs `calibrate` earlier in the pipeline. Prints one line per block (the summed GPTQ loss
  `Σ e²/2`, seconds, ETA). Memory: one block's weights and Hessians, two sets of the cached
  block inputs within `calibrate`'s `memory-budget` (the rest spills to a temporary file).
  """
