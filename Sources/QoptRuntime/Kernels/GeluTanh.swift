#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

extension Kernels {
  /// `y = ½x(1 + tanh(√(2/π)(x + 0.044715x³)))`, torch's `gelu(approximate="tanh")` (Gemma's
  /// `gelu_pytorch_tanh`), in f32. O(n); `y` may equal `x`.
  public static func geluTanh(
    _ x: UnsafePointer<Float>, count n: Int, into y: UnsafeMutablePointer<Float>
  ) {
    let c: Float = 0.797_884_56  // √(2/π)
    for i in 0..<n {
      let v = x[i]
      y[i] = 0.5 * v * (1 + tanhf(c * (v + 0.044715 * v * v * v)))
    }
  }

  /// GELU-tanh backward: with `u = √(2/π)(x + 0.044715x³)`,
  /// `dx += dy · (½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²))`. O(n).
  public static func geluTanhBackward(
    _ x: UnsafePointer<Float>, count n: Int, dy: UnsafePointer<Float>,
    dx: UnsafeMutablePointer<Float>
  ) {
    let c: Float = 0.797_884_56
    for i in 0..<n {
      let v = x[i]
      let t = tanhf(c * (v + 0.044715 * v * v * v))
      dx[i] += dy[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * c * (1 + 3 * 0.044715 * v * v))
    }
  }

  /// `y = x · factor`. O(n).
  public static func scale(
    _ x: UnsafePointer<Float>, count n: Int, by factor: Float, into y: UnsafeMutablePointer<Float>
  ) {
    for i in 0..<n { y[i] = x[i] * factor }
  }

  /// Columns `start ..< start+size` of `x[T, N]` into `y[T, size]`. O(T·size).
  public static func sliceColumns(
    _ x: UnsafePointer<Float>, rows t: Int, columns n: Int, start: Int, size: Int,
    into y: UnsafeMutablePointer<Float>
  ) {
    for r in 0..<t { (y + r * size).update(from: x + r * n + start, count: size) }
  }

  /// Slice backward: `dx[:, start..<start+size] += dy`. O(T·size).
  public static func sliceColumnsBackward(
    dy: UnsafePointer<Float>, rows t: Int, columns n: Int, start: Int, size: Int,
    dx: UnsafeMutablePointer<Float>
  ) {
    for r in 0..<t {
      let d = dx + r * n + start, g = dy + r * size
      for j in 0..<size { d[j] += g[j] }
    }
  }
}
