extension Kernels {
  /// `y[t, j] = w[j] · x[t, j] / sqrt(mean_k x[t, k]² + eps)` (ε inside the root, as HF).
  ///
  /// O(T·D); `y` may equal `x`.
  public static func rmsNorm(
    _ x: UnsafePointer<Float>, rows t: Int, columns d: Int, weight w: UnsafePointer<Float>, eps: Float,
    into y: UnsafeMutablePointer<Float>
  ) {
    for r in 0..<t {
      let xr = x + r * d
      let yr = y + r * d
      var acc = FastMath.V()
      var j = 0
      while j + 16 <= d {
        let v = UnsafeRawPointer(xr + j).loadUnaligned(as: FastMath.V.self)
        acc += v * v
        j += 16
      }
      var ss = acc.sum()
      while j < d {
        ss += xr[j] * xr[j]
        j += 1
      }
      let inv = 1 / (ss / Float(d) + eps).squareRoot()
      for j in 0..<d { yr[j] = w[j] * (xr[j] * inv) }
    }
  }
}
