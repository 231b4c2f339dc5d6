import QoptIR
import QoptRuntime

/// GPTQ on one linear weight (Frantar et al., "GPTQ: Accurate Post-Training Quantization for
/// Generative Pre-trained Transformers", 2022, Algorithm 1), as llm-compressor's
/// `quantize_weight` runs it: columns are rounded in order onto the scheme's grid and each
/// column's rounding error, weighted by the inverse Hessian, is pushed onto the columns not yet
/// rounded, so the layer's output error `‖XWᵀ − XQᵀ‖²` (not the weight error) is minimised.
///
///     H ← H + λ·mean(diag H)·I              (dampening; dead columns diag 0 → 1, W[:, j] = 0)
///     U ← chol(H⁻¹)ᵀ                         (upper: H⁻¹ = UᵀU)
///     for each column i:  q_i = grid(w_i);  e_i = (w_i − q_i) / U_ii
///                         w_j ← w_j − e_i·U_ij   for j > i (lazily per block of columns)
///
/// Columns are handled in blocks of `blockSize`: inside a block the update is immediate, the
/// rest of the matrix receives the block's errors in one sgemm (§3.4 "lazy batch updates").
/// Group scales are fitted when a group's first column is reached, from the values it then
/// holds (AutoGPTQ's default); the block size is rounded to a multiple of the group so a group
/// never straddles two blocks, which keeps the blocked result equal to the one-column-at-a-time
/// algorithm. `staticGroups` fits every group first, from the original weights
/// (llm-compressor's behaviour); `actOrder` visits columns by descending `diag H` and implies
/// static groups, so the groups stay contiguous in the stored layout (llm-compressor's
/// `actorder="weight"`).
///
/// Complexity: O(cols³) for the factorizations (f64 LAPACK), O(rows·cols·blockSize) for the
/// in-block updates and O(rows·cols²) in sgemm. Memory: `H` twice in f64, `W` once in f32.
package struct GPTQSolver {
  package var dampening = 0.01
  package var blockSize = 128
  package var actOrder = false
  package var staticGroups = false
  /// Dampen each column by `dampening · H_jj` (its own diagonal) instead of the mean's: a
  /// shrinkage of the input correlations toward none, the same for every channel whatever its
  /// scale (`H + λ·diag H ∝ (1 − α)·H + α·diag H`, α = λ/(1 + λ); RTN as λ → ∞).
  package var relativeDamping = false

  package init(
    dampening: Double = 0.01, blockSize: Int = 128, actOrder: Bool = false,
    staticGroups: Bool = false, relativeDamping: Bool = false
  ) {
    self.relativeDamping = relativeDamping
    self.dampening = dampening
    self.blockSize = blockSize
    self.actOrder = actOrder
    self.staticGroups = staticGroups
  }

  package struct Result {
    package var quantized: QuantizedTensor
    /// The rounded weights, row-major (what the runtime will compute with).
    package var dequantized: [Float]
    /// `Σ e_i² / 2`, llm-compressor's reported loss.
    package var loss: Double
    /// The dampened Hessian was not positive definite: plain rounding was used (a warning).
    package var fellBack: Bool
  }

  /// Quantizes `w` (`rows × cols`, row-major) given the Hessian `h` (`cols × cols`, symmetric,
  /// any positive multiple of `XᵀX`) with `rounder`'s grid.
  package func solve<R: GridRounder>(
    _ w: [Float], rows: Int, cols: Int, hessian h: [Float], rounder: inout R
  ) -> Result {
    precondition(w.count == rows * cols && h.count == cols * cols, "GPTQ shapes")
    var hd = h.map(Double.init)
    var wm = w
    let diag0 = (0..<cols).map { hd[$0 * cols + $0] }
    // Dead inputs (never nonzero in calibration): nothing to preserve, quantize them to 0.
    for j in 0..<cols where diag0[j] == 0 {
      hd[j * cols + j] = 1
      for r in 0..<rows { wm[r * cols + j] = 0 }
    }
    // Activation order from the undampened diagonal (llm-compressor: before the dead fix).
    let perm =
      actOrder
      ? (0..<cols).sorted { diag0[$0] != diag0[$1] ? diag0[$0] > diag0[$1] : $0 < $1 }
      : Array(0..<cols)
    var mean = 0.0
    for j in 0..<cols { mean += hd[j * cols + j] }
    let damp = dampening * mean / Double(cols)
    var hp = [Double](repeating: 0, count: cols * cols)
    for i in 0..<cols {
      for j in 0..<cols { hp[i * cols + j] = hd[perm[i] * cols + perm[j]] }
      hp[i * cols + i] += relativeDamping ? dampening * hd[perm[i] * cols + perm[i]] : damp
    }
    let factor = LAPACK.inverseCholeskyUpper(hp, n: cols)
    var u = [Float](repeating: 0, count: cols * cols)
    if let factor {
      for k in 0..<(cols * cols) { u[k] = Float(factor[k]) }
    } else {
      for i in 0..<cols { u[i * cols + i] = 1 }
    }

    // Column-major working copy: column i (in visiting order) is `rows` contiguous floats.
    var wt = [Float](repeating: 0, count: rows * cols)
    for i in 0..<cols {
      for r in 0..<rows { wt[i * rows + r] = wm[r * cols + perm[i]] }
    }
    let gw = rounder.groupWidth
    let dynamic = !staticGroups && !actOrder && gw < cols
    var gather = [Float](repeating: 0, count: rows * min(gw, cols))
    if !dynamic {
      var all = [Float](repeating: 0, count: rows * cols)
      for first in stride(from: 0, to: cols, by: gw) {
        let width = min(gw, cols - first)
        // One scale for the whole tensor sees every column; a group sees its own.
        let (lo, n) = gw == cols ? (0, cols) : (first, width)
        for r in 0..<rows {
          for k in 0..<n { all[r * n + k] = wm[r * cols + lo + k] }
        }
        // safe: `all` is non-empty.
        all.withUnsafeBufferPointer { rounder.fit(group: first, width: n, values: $0.baseAddress!) }
      }
    }
    let bs = dynamic ? max(1, blockSize / gw) * gw : blockSize
    var loss = 0.0
    var err = [Float](repeating: 0, count: rows * min(bs, cols))
    var original = [Float](repeating: 0, count: rows)
    wt.withUnsafeMutableBufferPointer { wtb in
      u.withUnsafeBufferPointer { ub in
        err.withUnsafeMutableBufferPointer { eb in
          let wp = wtb.baseAddress!, up = ub.baseAddress!, ep = eb.baseAddress!  // safe: non-empty
          for i1 in stride(from: 0, to: cols, by: bs) {
            let i2 = min(i1 + bs, cols)
            for i in i1..<i2 {
              let c = perm[i]
              if dynamic && c % gw == 0 {
                let width = min(gw, cols - c)
                for r in 0..<rows {
                  for k in 0..<width { gather[r * width + k] = wp[(i + k) * rows + r] }
                }
                gather.withUnsafeBufferPointer {
                  rounder.fit(group: c, width: width, values: $0.baseAddress!)
                }  // safe: non-empty
              }
              let col = wp + i * rows
              for r in 0..<rows { original[r] = col[r] }
              rounder.round(column: c, col)
              let d = up[i * cols + i]
              let e = ep + (i - i1) * rows
              for r in 0..<rows {
                e[r] = (original[r] - col[r]) / d
                loss += Double(e[r] * e[r]) / 2
              }
              for j in (i + 1)..<i2 {
                let hij = up[i * cols + j]
                let cj = wp + j * rows
                for r in 0..<rows { cj[r] -= hij * e[r] }
              }
            }
            // The block's errors reach every later column at once: W[:, i2:] −= Err · U[i1:i2, i2:].
            BLAS.sgemmTransA(
              m: cols - i2, n: rows, k: i2 - i1, alpha: -1, a: up + i1 * cols + i2, lda: cols,
              b: ep,
              ldb: rows, beta: 1, c: wp + i2 * rows, ldc: rows)
          }
        }
      }
    }
    var q = [Float](repeating: 0, count: rows * cols)
    for i in 0..<cols {
      for r in 0..<rows { q[r * cols + perm[i]] = wt[i * rows + r] }
    }
    return Result(quantized: rounder.result(), dequantized: q, loss: loss, fellBack: factor == nil)
  }
}
