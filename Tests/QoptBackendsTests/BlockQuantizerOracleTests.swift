import CQoptCodecs
import QoptBackends
import QoptFormats
import QoptIR
import QoptTestSupport
import Testing

/// The scalar definitions of llama.cpp's Q8_0 / Q4_0 / Q4_1 rounding (as the `gguf` package's
/// numpy code computes them), kept here as the oracle for the vectorized encoders.
private enum Scalar {
  static func floorSmall(_ t: Float) -> Int32 {
    let magic: Float = 8_388_608
    let m = t + magic
    var r = Int32(bitPattern: m.bitPattern &- magic.bitPattern)
    let rf = m - magic
    if rf > t { r -= 1 }
    return r
  }
  static func roundHalfAway(_ v: Float) -> Int32 {
    let a0 = abs(v)
    let a = a0 < 1024 ? a0 : 0
    let fl = floorSmall(a)
    let b = fl + (a - Float(fl) >= 0.5 ? 1 : 0)
    return v < 0 ? -b : b
  }
  static func nibble(_ t: Float) -> UInt8 { UInt8(floorSmall(t > 0 ? Swift.min(t, 15.5) : 0)) }
  static func half(_ v: Float) -> [UInt8] { withUnsafeBytes(of: BlockQuantizers.halfBits(v).littleEndian) { Array($0) } }

  static func q8_0(_ x: ArraySlice<Float>) -> [UInt8] {
    let x = Array(x)
    var amax: Float = 0
    for v in x where abs(v) > amax { amax = abs(v) }
    let d = amax / 127
    let id: Float = d == 0 ? 0 : 1 / d
    return half(d) + x.map { UInt8(bitPattern: Int8(truncatingIfNeeded: roundHalfAway($0 * id))) }
  }
  static func q4_0(_ x: ArraySlice<Float>) -> [UInt8] {
    let x = Array(x)
    var amax = abs(x[0]), maxv = x[0]
    for i in 1..<32 where abs(x[i]) > amax {
      amax = abs(x[i])
      maxv = x[i]
    }
    let d = maxv / -8
    let id: Float = d == 0 ? 0 : 1 / d
    return half(d) + (0..<16).map { j in nibble(x[j] * id + 8.5) | (nibble(x[j + 16] * id + 8.5) << 4) }
  }
  static func q4_1(_ x: ArraySlice<Float>) -> [UInt8] {
    let x = Array(x)
    var lo = x[0], hi = x[0]
    for i in 1..<32 {
      lo = Swift.min(lo, x[i])
      hi = Swift.max(hi, x[i])
    }
    let d = (hi - lo) / 15
    let id: Float = d == 0 ? 0 : 1 / d
    return half(d) + half(lo) + (0..<16).map { j in nibble((x[j] - lo) * id + 0.5) | (nibble((x[j + 16] - lo) * id + 0.5) << 4) }
  }
}

/// Random blocks with the awkward values mixed in: signed zeros, ties at .5, NaN, ±inf,
/// subnormals, huge values, all-equal and all-zero blocks.
private func blocks(_ n: Int) -> [Float] {
  var rng = SplitMix64(seed: 42)
  let specials: [Float] = [0, -0.0, .nan, .infinity, -.infinity, Float(1e-40 as Double), -Float(1e-40 as Double), 3e38, -3e38, 0.5, -0.5, 1.5, 8, -8]
  var x: [Float] = []
  for b in 0..<n {
    let kind = b % 7
    for i in 0..<32 {
      let r = Float(Double(rng.next() >> 11) / Double(1 << 53)) * 2 - 1
      switch kind {
      case 0: x.append(r)
      case 1: x.append(rng.next() % 5 == 0 ? specials[Int(rng.next() % UInt64(specials.count))] : r)
      case 2: x.append(rng.next() % 2 == 0 ? 0 : -0.0)
      case 3: x.append(Float(Int(rng.next() % 17) - 8) / 4)  // many exact ties
      case 4: x.append(i == 0 ? .nan : r)
      case 5: x.append(rng.next() % 3 == 0 ? -0.0 : -abs(r))  // max is a signed zero
      default: x.append(r * Float(1e-39 as Double))
      }
    }
  }
  return x
}

/// Both C bodies (the AVX2 one this CPU runs, and the portable one) against the definition.
@Test(arguments: [GGMLType.q8_0, .q4_0, .q4_1], [false, true])
func vectorEncodersMatchScalarDefinition(_ t: GGMLType, portable: Bool) {
  let n = 20_000
  let x = blocks(n)
  var out = [UInt8](repeating: 0, count: t.byteCount(elements: x.count))
  x.withUnsafeBufferPointer { xs in
    out.withUnsafeMutableBytes { o in
      if portable {
        qopt_encode_portable(t == .q8_0 ? 0 : t == .q4_0 ? 1 : 2, xs.baseAddress!, n, o.baseAddress!.assumingMemoryBound(to: UInt8.self))
      } else {
        BlockQuantizers.encode(xs.baseAddress!, count: x.count, as: t, into: o.baseAddress!)
      }
    }
  }
  var mismatches = 0
  for b in 0..<n {
    let slice = x[(32 * b)..<(32 * b + 32)]
    let want: [UInt8] = t == .q8_0 ? Scalar.q8_0(slice) : t == .q4_0 ? Scalar.q4_0(slice) : Scalar.q4_1(slice)
    let got = Array(out[(b * t.typeSize)..<((b + 1) * t.typeSize)])
    if got != want {
      mismatches += 1
      if mismatches <= 3 { Issue.record("\(t.name) block \(b): \(slice) → \(got), want \(want)") }
    }
  }
  #expect(mismatches == 0)
}
