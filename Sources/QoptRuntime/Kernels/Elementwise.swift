import CQoptKernels

extension Kernels {
  /// `y = x · sigmoid(x) = x / (1 + e^(−x))` (AVX2 in CQoptKernels when the CPU has it). O(n);
  /// `y` may equal `x`.
  public static func silu(
    _ x: UnsafePointer<Float>, count n: Int, into y: UnsafeMutablePointer<Float>
  ) {
    qopt_silu(x, y, n)
  }

  /// `y = a ∘ b`. O(n).
  public static func mul(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count n: Int,
    into y: UnsafeMutablePointer<Float>
  ) {
    for i in 0..<n { y[i] = a[i] * b[i] }
  }

  /// `y = a + b`. O(n).
  public static func add(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count n: Int,
    into y: UnsafeMutablePointer<Float>
  ) {
    for i in 0..<n { y[i] = a[i] + b[i] }
  }

  /// `y[t, :] = table[ids[t], :]`; ids are range-checked by the caller. O(T·D).
  public static func embedding(
    _ ids: UnsafePointer<Int32>, count t: Int, table: UnsafePointer<Float>, columns d: Int,
    into y: UnsafeMutablePointer<Float>
  ) {
    for r in 0..<t { (y + r * d).update(from: table + Int(ids[r]) * d, count: d) }
  }
}

extension Kernels {
  /// `y = silu(g) ∘ u`, the SwiGLU product, in one pass: the same values as `silu` then `mul`
  /// without writing and rereading the silu values. O(n); `y` may equal `g` or `u`.
  public static func siluMul(
    _ g: UnsafePointer<Float>, _ u: UnsafePointer<Float>, count n: Int,
    into y: UnsafeMutablePointer<Float>
  ) {
    qopt_silu_mul(g, u, y, n)
  }
}
