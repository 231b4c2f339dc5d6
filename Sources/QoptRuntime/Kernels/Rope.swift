#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Precomputed RoPE tables (llama-forward.md §4), in float32 as transformers computes them:
/// `inv_freq[i] = 1 / θ^(2i/d)`, angle `p · inv_freq[i]` rounded to f32, then cos and sin.
public struct RopeTable: Sendable {
  public let headDim: Int
  public let positions: Int
  /// `[positions, headDim/2]`.
  public let cos: [Float]
  public let sin: [Float]
  public let invFreq: [Float]
  /// The base of a table built as ggml builds its RoPE cache (`ggml(headDim:theta:positions:)`).
  public private(set) var ggmlTheta: Double?

  /// Llama-3 scaling parameters (`rope_type = "llama3"`).
  public struct Llama3: Hashable, Sendable {
    public var factor: Double, lowFreqFactor: Double, highFreqFactor: Double,
      originalMaxPositions: Int
    public init(
      factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalMaxPositions: Int
    ) {
      self.factor = factor
      self.lowFreqFactor = lowFreqFactor
      self.highFreqFactor = highFreqFactor
      self.originalMaxPositions = originalMaxPositions
    }
  }

  public init(headDim d: Int, theta: Double, positions: Int, llama3: Llama3? = nil) {
    let half = d / 2
    var inv = (0..<half).map { i -> Float in
      let e = Float(2 * i) / Float(d)
      return 1 / powf(Float(theta), e)
    }
    if let s = llama3 {
      let lowWl = Float(s.originalMaxPositions) / Float(s.lowFreqFactor)
      let highWl = Float(s.originalMaxPositions) / Float(s.highFreqFactor)
      let f = Float(s.factor)
      inv = inv.map { v in
        let wl = 2 * Float.pi / v
        if wl < highWl { return v }
        if wl > lowWl { return v / f }
        let smooth =
          (Float(s.originalMaxPositions) / wl - Float(s.lowFreqFactor))
          / Float(s.highFreqFactor - s.lowFreqFactor)
        return (1 - smooth) * v / f + smooth * v
      }
    }
    self.init(headDim: d, invFreq: inv, positions: positions)
  }

  /// The table of `positions` rows for frequencies `inv` (one per rotated pair).
  init(headDim d: Int, invFreq inv: [Float], positions: Int) {
    headDim = d
    self.positions = positions
    let half = d / 2
    invFreq = inv
    var c = [Float](repeating: 0, count: positions * half)
    var s = [Float](repeating: 0, count: positions * half)
    for p in 0..<positions {
      for i in 0..<half {
        let a = Float(p) * inv[i]
        c[p * half + i] = cosf(a)
        s[p * half + i] = sinf(a)
      }
    }
    cos = c
    sin = s
  }

  /// The angles as ggml's CPU RoPE computes them (`ggml_rope_cache_init`): per position p,
  /// θ₀ = p and θᵢ₊₁ = θᵢ · base^(−2/d) in float, one rounding per step, then `cosf`/`sinf`.
  /// Against `p · base^(−2i/d)` the angles differ by up to ~1e-5 rad at p ≈ 500; llama.cpp's
  /// numbers are reproduced more closely with its own.
  public static func ggml(headDim d: Int, theta: Double, positions: Int) -> RopeTable {
    let half = d / 2
    let scale = powf(Float(theta), -2 / Float(d))
    var c = [Float](repeating: 0, count: positions * half)
    var s = [Float](repeating: 0, count: positions * half)
    for p in 0..<positions {
      var a = Float(p)
      for i in 0..<half {
        c[p * half + i] = cosf(a)
        s[p * half + i] = sinf(a)
        a *= scale
      }
    }
    var t = RopeTable(headDim: d, theta: theta, positions: 0)
    t = RopeTable(headDim: d, invFreq: t.invFreq, cos: c, sin: s, positions: positions)
    t.ggmlTheta = theta
    return t
  }

  init(headDim d: Int, invFreq: [Float], cos: [Float], sin: [Float], positions: Int) {
    headDim = d
    self.positions = positions
    self.invFreq = invFreq
    self.cos = cos
    self.sin = sin
  }

  /// This table if it has at least `n` positions, else the same frequencies over `n`
  /// positions (identical values in the rows both have). Callers size tables from the run's
  /// window length: a table read past its last row would read other memory.
  public func covering(_ n: Int) -> RopeTable {
    if n <= positions { return self }
    if let ggmlTheta { return .ggml(headDim: headDim, theta: ggmlTheta, positions: n) }
    return RopeTable(headDim: headDim, invFreq: invFreq, positions: n)
  }
}

extension Kernels {
  /// Rotate-half RoPE on `x[T, heads·d]` at positions 0…T−1: pairs (i, i + d/2) of each head.
  /// With `headStride` (the head size) larger than `table.headDim` (the rotary size), only the
  /// first `table.headDim` of each head rotate and the rest pass through (partial rotary).
  ///
  /// O(T·heads·d); `y` may equal `x`; `table.positions ≥ T`.
  public static func rope(
    _ x: UnsafePointer<Float>, rows t: Int, heads: Int, table: RopeTable,
    into y: UnsafeMutablePointer<Float>,
    headStride: Int? = nil
  ) {
    precondition(
      t <= table.positions, "rope: \(t) rows but the table has \(table.positions) positions")
    let r = table.headDim, half = r / 2
    let d = headStride ?? r
    if d > r {
      for p in 0..<t {
        for h in 0..<heads {
          let o = p * heads * d + h * d + r
          (y + o).update(from: x + o, count: d - r)
        }
      }
    }
    table.cos.withUnsafeBufferPointer { cb in
      table.sin.withUnsafeBufferPointer { sb in
        for p in 0..<t {
          let c = cb.baseAddress! + p * half  // safe: tables are non-empty for d ≥ 2
          let s = sb.baseAddress! + p * half  // safe: as above
          for h in 0..<heads {
            let xi = x + p * heads * d + h * d
            let yi = y + p * heads * d + h * d
            for i in 0..<half {
              let a = xi[i], b = xi[i + half]
              yi[i] = a * c[i] - b * s[i]
              yi[i + half] = b * c[i] + a * s[i]
            }
          }
        }
      }
    }
  }
}
