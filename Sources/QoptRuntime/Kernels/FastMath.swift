/// Vectorized `exp` (Cephes `expf` range reduction and polynomial; max relative error ≈ 2 ulp).
///
/// Softmax, SiLU and the perplexity log-softmax evaluate ~10^8 exponentials per 40×512 run;
/// the libm call would cost more than the matrix products. The loops are written as plain
/// scalar code without traps or reductions so LLVM's loop vectorizer turns them into packed
/// instructions (Swift's generic SIMD min/max and conversions are not lowered to packed ops).
public enum FastMath {
  public typealias V = SIMD16<Float>

  /// `exp(x)` for one value, branch- and trap-free (inputs clamped to [-87.3, 88.4]).
  @inline(__always)
  public static func exp(_ x0: Float) -> Float {
    let x1 = Swift.min(Swift.max(x0, -87.33654), 88.3762626647949)
    // Round to nearest with the 1.5·2^23 trick: the integer lands in the low mantissa bits.
    let t = x1 * 1.44269504088896341 + 12582912
    let fx = t - 12582912
    var x = x1 - fx * 0.693359375
    x = x + fx * 2.12194440e-4
    let z = x * x
    var y: Float = 1.9875691500e-4
    y = y * x + 1.3981999507e-3
    y = y * x + 8.3334519073e-3
    y = y * x + 4.1665795894e-2
    y = y * x + 1.6666665459e-1
    y = y * x + 5.0000001201e-1
    y = y * z + x + 1
    let n = Int32(bitPattern: t.bitPattern) &- 0x4B40_0000
    return y * Float(bitPattern: UInt32(bitPattern: (n &+ 127) &<< 23))
  }

  /// `dst[i] = exp(src[i] - shift)`; returns the sum of the results. `dst` may equal `src`.
  @inline(__always)
  public static func expShifted(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, count n: Int, shift: Float) -> Float {
    for i in 0..<n { dst[i] = exp(src[i] - shift) }
    return sum(UnsafePointer(dst), count: n)
  }

  /// The sum of `n` values (16 partial sums).
  @inline(__always)
  public static func sum(_ p: UnsafePointer<Float>, count n: Int) -> Float {
    var acc = V()
    var i = 0
    while i + 16 <= n {
      acc += UnsafeRawPointer(p + i).loadUnaligned(as: V.self)
      i += 16
    }
    var r = acc.sum()
    while i < n {
      r += p[i]
      i += 1
    }
    return r
  }

  /// The maximum of `n > 0` values.
  @inline(__always)
  public static func max(_ p: UnsafePointer<Float>, count n: Int) -> Float {
    var m0 = -Float.infinity, m1 = -Float.infinity, m2 = -Float.infinity, m3 = -Float.infinity
    var i = 0
    while i + 4 <= n {
      m0 = Swift.max(m0, p[i])
      m1 = Swift.max(m1, p[i + 1])
      m2 = Swift.max(m2, p[i + 2])
      m3 = Swift.max(m3, p[i + 3])
      i += 4
    }
    while i < n {
      m0 = Swift.max(m0, p[i])
      i += 1
    }
    return Swift.max(Swift.max(m0, m1), Swift.max(m2, m3))
  }
}
