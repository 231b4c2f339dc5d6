import QoptRuntime

/// The Hessian GPTQ weighs a linear's output error with, `H = 2·Σ_t c_t·x_t x_tᵀ / Σ_t c_t`
/// over its calibration input rows `x_t`, accumulated batch by batch (f32 `ssyrk`, upper
/// triangle; `matrix()` symmetrizes).
///
/// `c_t` is 1 except for the first token of each calibration window, which counts
/// `sinkWeight` times. That token is the attention sink: every later token of the window
/// attends to it, and after the first blocks its residual stream carries massive activations,
/// so its normalized input points where few other rows do. With `c = 1` (the paper's, and
/// llm-compressor's, `H`) it is 1 row in `seqlen`, and GPTQ compensates the other rows' error
/// at its expense: on SmolLM2-135M its q/k/v output error comes out up to 2× RTN's while the
/// mean row's drops 3×, and the perplexity ends up worse than RTN's (docs/algorithms.md).
package struct GPTQHessian {
  package let columns: Int
  let tokensPerWindow: Int
  let sinkWeight: Float
  private var sum: [Float]
  private var rows = 0
  private var weight = 0.0

  package init(columns: Int, tokensPerWindow: Int, sinkWeight: Double) {
    self.columns = columns
    self.tokensPerWindow = max(tokensPerWindow, 1)
    self.sinkWeight = Float(sinkWeight)
    sum = [Float](repeating: 0, count: columns * columns)
  }

  /// Adds `count` input rows (row-major, `columns` wide) that follow the rows added so far in
  /// window order (so row `i` overall is a window's first token when `i % tokensPerWindow == 0`).
  package mutating func add(_ x: UnsafePointer<Float>, count: Int) {
    guard count > 0 else { return }
    let n = columns
    sum.withUnsafeMutableBufferPointer {
      BLAS.ssyrkTransA(n: n, k: count, a: x, lda: n, c: $0.baseAddress!, ldc: n)
    }  // safe: columns > 0 when rows arrive
    var sinks: [Float] = []
    for r in 0..<count where (rows + r) % tokensPerWindow == 0 {
      sinks.append(contentsOf: UnsafeBufferPointer(start: x + r * n, count: n))
    }
    if sinkWeight != 1 && !sinks.isEmpty {
      sum.withUnsafeMutableBufferPointer { s in
        sinks.withUnsafeBufferPointer {
          BLAS.ssyrkTransA(
            n: n, k: $0.count / n, alpha: sinkWeight - 1, a: $0.baseAddress!, lda: n,
            c: s.baseAddress!, ldc: n)
        }  // safe: both non-empty
      }
    }
    rows += count
    weight += Double(count) + Double(sinks.count / n) * Double(sinkWeight - 1)
  }

  /// Adds `o`, the sums of the windows right after these (the next data shard,
  /// `GPTQHessianPartial`): the upper triangles element by element in f32, the token weights
  /// in f64. Adding the shards in order is the definition of the sharded sum, so one process
  /// and merged partials give the same bits.
  package mutating func add(_ o: GPTQHessian) {
    precondition(o.columns == columns, "adding Hessians of different widths")
    for i in sum.indices { sum[i] += o.sum[i] }
    rows += o.rows
    weight += o.weight
  }

  /// Rows added, and their summed weights (`Σ c_t`).
  package var counts: (rows: Int, weight: Double) { (rows, weight) }

  /// The unscaled upper triangle `Σ c_t·x_t x_tᵀ`, row by row (`columns·(columns+1)/2` floats).
  package var upperTriangle: [Float] {
    var out: [Float] = []
    out.reserveCapacity(columns * (columns + 1) / 2)
    for i in 0..<columns { out.append(contentsOf: sum[(i * columns + i)..<((i + 1) * columns)]) }
    return out
  }

  /// Sums read back from `upperTriangle` and `counts` (a saved data shard's).
  package init(
    columns: Int, tokensPerWindow: Int, sinkWeight: Double, upperTriangle u: [Float], rows: Int,
    weight: Double
  ) {
    self.init(columns: columns, tokensPerWindow: tokensPerWindow, sinkWeight: sinkWeight)
    precondition(u.count == columns * (columns + 1) / 2, "a packed upper triangle")
    var k = 0
    for i in 0..<columns {
      for j in i..<columns {
        sum[i * columns + j] = u[k]
        k += 1
      }
    }
    self.rows = rows
    self.weight = weight
  }

  /// The full symmetric `columns × columns` matrix, row-major.
  package func matrix() -> [Float] {
    var h = sum
    let n = columns
    let k = Float(2 / max(weight, 1))
    for i in 0..<n {
      for j in i..<n {
        h[i * n + j] *= k
        h[j * n + i] = h[i * n + j]
      }
    }
    return h
  }
}
