import CQoptKernels

/// Vectorized `exp` (Cephes `expf` range reduction and polynomial; max relative error ≈ 2 ulp).
///
/// Softmax, SiLU and the perplexity log-softmax evaluate ~10^9 exponentials per 40×512 run;
/// the libm call would cost more than the matrix products. The array loops (`expShifted`,
/// `max`) run in the C target CQoptKernels, which picks an AVX2+FMA body at run time: Swift
/// compiles for baseline x86-64 (4-wide SSE, no FMA), which made these loops ~2× slower. The
/// scalar `exp` below is the same polynomial, for loops that stay in Swift.
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

  /// `dst[i] = exp(src[i] - shift)`; returns the sum of the results. `dst` may equal `src`;
  /// `nil` only sums (the log-softmax needs no probabilities).
  @inline(__always)
  public static func expShifted(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>?, count n: Int, shift: Float) -> Float {
    qopt_exp_shifted_sum(src, dst, n, shift)
  }

  /// Causal softmax numerator of one score row in place: `row[j] = exp(row[j] − max)` for
  /// `j < valid`, zero for `valid ≤ j < n`; returns `1 / Σ`, to scale the row's product with
  /// V instead of the row itself (d multiplies per row instead of `valid`).
  @inline(__always)
  public static func softmaxNumerator(_ row: UnsafeMutablePointer<Float>, valid: Int, count n: Int) -> Float {
    qopt_softmax_row_unnormalized(row, valid, n)
  }

  /// Softmax backward of one probability row in place: `dp[j] = p[j]·(dp[j] − Σ p∘dp)` for
  /// `j < valid`, zero for `valid ≤ j < n`.
  @inline(__always)
  public static func softmaxGradient(_ p: UnsafePointer<Float>, _ dp: UnsafeMutablePointer<Float>, valid: Int, count n: Int) {
    qopt_softmax_grad_row(p, dp, valid, n)
  }

  /// `p[i] *= s`.
  @inline(__always)
  public static func scale(_ p: UnsafeMutablePointer<Float>, count n: Int, by s: Float) {
    qopt_scale(p, n, s)
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
    qopt_max(p, n)
  }
}
