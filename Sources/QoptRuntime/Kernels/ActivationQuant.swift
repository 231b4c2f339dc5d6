import QoptIR

extension Kernels {
  /// Fake-quantizes an activation `x[rows, columns]` in place, as compressed-tensors'
  /// `_quantize_dequantize` does for a linear's input (docs/activations.md):
  ///
  ///     s  = amax / 448 (fp8) or amax / 127.5 (int8)    per row (token) or over x (tensor),
  ///                                                     or the stored static scale;
  ///                                                     an exact 0 becomes f32 epsilon
  ///     x̂ = round(clamp(x / s, qmin, qmax)) · s         fp8: nearest E4M3, ties to even, ±448
  ///                                                     int8: [−128, 127], ties to even
  ///
  /// O(rows·columns); no allocation.
  public static func fakeQuantize(_ x: UnsafeMutablePointer<Float>, rows: Int, columns: Int, _ q: InputQuantization) {
    func absMax(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> Float {
      var m: Float = 0
      for i in 0..<n { m = Swift.max(m, abs(p[i])) }
      return m
    }
    func scale(_ amax: Float) -> Float {
      let s = amax / q.kind.scaleDivisor
      return s == 0 ? Float.ulpOfOne : s
    }
    switch (q.mode, q.strategy) {
    case (.static, _):
      fakeQuantize(x, count: rows * columns, scale: q.scale ?? Float.ulpOfOne, kind: q.kind)
    case (.dynamic, .tensor):
      fakeQuantize(x, count: rows * columns, scale: scale(absMax(x, rows * columns)), kind: q.kind)
    case (.dynamic, .token):
      for r in 0..<rows {
        let row = x + r * columns
        fakeQuantize(row, count: columns, scale: scale(absMax(row, columns)), kind: q.kind)
      }
    }
  }

  /// `x̂ = round(clamp(x / s)) · s` over `count` values with one scale.
  static func fakeQuantize(_ x: UnsafeMutablePointer<Float>, count: Int, scale s: Float, kind: InputQuantization.Kind) {
    switch kind {
    case .int8:
      for i in 0..<count {
        let v = Swift.min(Swift.max(x[i] / s, -128), 127)
        x[i] = v.rounded(.toNearestOrEven) * s
      }
    case .fp8:
      for i in 0..<count {
        let v = Swift.min(Swift.max(x[i] / s, -448), 448)
        x[i] = roundedToE4M3(v) * s
      }
    }
  }

  /// The E4M3 value nearest to `v` (|v| ≤ 448), ties to even: the same value as
  /// `e4m3ToFloat(floatToE4M3(v))`, in float arithmetic so the loop vectorizes. A value in
  /// binade 2^e (e ≥ −6; below that the subnormal step 2^−9) has step 2^(e−3): scale by the
  /// inverse power of two, round to an integer, scale back (all exact).
  @inline(__always) static func roundedToE4M3(_ v: Float) -> Float {
    let e = Swift.max(Int32(bitPattern: (v.bitPattern >> 23) & 0xFF) - 127, -6)
    let up = Float(bitPattern: UInt32(bitPattern: 127 + 3 - e) << 23)
    let down = Float(bitPattern: UInt32(bitPattern: 127 - 3 + e) << 23)
    return (v * up).rounded(.toNearestOrEven) * down
  }
}
