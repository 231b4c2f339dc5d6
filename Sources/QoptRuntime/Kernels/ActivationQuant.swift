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
    if q.kind == .nvfp4 {
      for r in 0..<rows { fakeQuantizeNVFP4(x + r * columns, count: columns, globalScale: q.globalScale ?? 1) }
      return
    }
    switch (q.mode, q.strategy) {
    case (.local, _), (_, .group):
      return  // NVFP4 only, handled above
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

  /// One activation row as NVFP4 with compressed-tensors' "local" rule: per group of 16
  /// `s = e4m3(clamp(gs · (amax₁₆ / 6), ±448))` (0 → 0.125), step `s / gs`,
  /// `x̂ = E2M1(clamp(x / step, ±6)) · step` — the weight rule with the calibrated `gs`.
  /// A short last group (columns not a multiple of 16) is quantized as a group of its own.
  static func fakeQuantizeNVFP4(_ x: UnsafeMutablePointer<Float>, count: Int, globalScale gs: Float) {
    var start = 0
    while start < count {
      let end = Swift.min(start + 16, count)
      var am: Float = 0
      for i in start..<end { let a = abs(x[i]); am = a > am ? a : am }
      var sb = floatToE4M3(Swift.min(Swift.max(gs * (am / 6), -448), 448))
      if sb == 0 || sb == 0x80 { sb = 0x20 }
      let step = e4m3ToFloat(sb) / gs
      for i in start..<end {
        x[i] = e2m1ToFloat(floatToE2M1(Swift.min(Swift.max(x[i] / step, -6), 6))) * step
      }
      start = end
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
    case .nvfp4:
      fakeQuantizeNVFP4(x, count: count, globalScale: 1 / s)
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
