import CQoptCodecs
import QoptIR

/// A ggml block type's grid as GPTQ sees it (`gptq<scheme=q4_k>`): at the start of each block
/// (256 weights for the K-quants, 32 for the others) ggml's own encoder, with its own scale and
/// min search (importance-weighted when the module has an importance matrix), encodes the
/// block's current, error-updated values; that fixes the block's scales and mins. Each column is
/// then rounded to the nearest code on that grid and the code written into the block, so the
/// result is a valid ggml block that ggml's decoder turns into exactly the values GPTQ used.
///
/// Per element the grid is `a·q − b` with q in `lo…hi` (Q4_K: `a = d·sc_j`, `b = dmin·m_j`, q in
/// 0…15; Q6_K: `a = d·sc_j`, q in −32…31; Q4_0: `a = d`, q − 8 in −8…7; Q5_0: `a = d`, q − 16
/// in −16…15; Q8_0: `a = d`, q in −127…127), computed in f32 as ggml's `to_float` computes it.
///
/// Memory: the blocks of the whole tensor (rows · row bytes).
package struct GGMLGridRounder: GridRounder {
  /// The types whose block layout this rounder can write a single code into.
  package static let supported: [GGMLBlockKind] = [.q4_k, .q6_k, .q4_0, .q5_0, .q8_0]

  let kind: GGMLBlockKind
  let rows: Int, cols: Int
  let importance: [Float]?
  package let groupWidth: Int
  private let rowBytes: Int, blockBytes: Int
  private var blocks: [UInt8]

  package init?(kind: GGMLBlockKind, rows: Int, cols: Int, importance: [Float]?) {
    guard Self.supported.contains(kind), cols % kind.blockSize == 0 else { return nil }
    self.kind = kind
    self.rows = rows
    self.cols = cols
    self.importance = importance
    groupWidth = kind.blockSize
    rowBytes = kind.rowBytes(columns: cols)
    blockBytes = kind.blockBytes
    blocks = [UInt8](repeating: 0, count: rows * rowBytes)
  }

  package mutating func fit(group first: Int, width: Int, values: UnsafePointer<Float>) {
    precondition(width == groupWidth, "ggml blocks are whole")
    let offset = first / groupWidth * blockBytes
    let (k, rb) = (Int32(kind.rawValue), rowBytes)
    blocks.withUnsafeMutableBytes { b in
      // safe: rows·rowBytes > 0 whenever a group is fitted
      let base = b.baseAddress!
      func encode(_ imp: UnsafePointer<Float>?) {
        for r in 0..<rows {
          _ = qopt_ggml_quantize(
            k, values + r * width, base + r * rb + offset, 1, Int64(width), imp)
        }
      }
      if let importance {
        importance.withUnsafeBufferPointer { encode($0.baseAddress! + first) }  // safe: cols > 0
      } else {
        encode(nil)
      }
    }
  }

  package mutating func round(column c: Int, _ values: UnsafeMutablePointer<Float>) {
    let offset = c / groupWidth * blockBytes
    let i = c % groupWidth
    let (kind, rb) = (self.kind, rowBytes)
    blocks.withUnsafeMutableBytes { b in
      for r in 0..<rows {
        // safe: the buffer holds rows·rowBytes bytes
        let p = (b.baseAddress! + r * rb + offset).assumingMemoryBound(to: UInt8.self)
        values[r] = Self.round(values[r], element: i, block: p, kind: kind)
      }
    }
  }

  package func result() -> QuantizedTensor {
    QuantizedTensor(ggml: kind, blocks: blocks, rows: rows)
  }

  private static func half(_ p: UnsafeMutablePointer<UInt8>) -> Float {
    f16ToFloat(UInt16(p[0]) | UInt16(p[1]) << 8)
  }

  /// `nearbyint` as ggml's `nearest_int` (ties to even), clamped to `lo…hi`.
  private static func code(_ x: Float, _ a: Float, _ b: Float, _ lo: Int, _ hi: Int) -> Int {
    guard a != 0, x.isFinite else { return min(max(0, lo), hi) }
    let q = ((x + b) / a).rounded(.toNearestOrEven)
    return Int(min(max(q, Float(lo)), Float(hi)))
  }

  /// Rounds `x` onto element `i`'s grid in the block at `p`, writes its code there, and
  /// returns the value ggml decodes it to.
  static func round(
    _ x: Float, element i: Int, block p: UnsafeMutablePointer<UInt8>, kind: GGMLBlockKind
  ) -> Float {
    switch kind {
    case .q4_k:
      // d, dmin (f16), scales[12], qs[128]; 64-weight chunks: low nibbles, then high nibbles.
      let (d, dmin) = (half(p), half(p + 2))
      let chunk = i / 64, within = i % 64, high = within >= 32
      let j = 2 * chunk + (high ? 1 : 0)
      let s = p + 4
      let (sc, m): (UInt8, UInt8) =
        j < 4
        ? (s[j] & 63, s[j + 4] & 63)
        : ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
      let d1 = d * Float(sc), m1 = dmin * Float(m)
      let q = code(x, d1, m1, 0, 15)
      let byte = p + 16 + chunk * 32 + within % 32
      byte.pointee = high ? (byte.pointee & 0x0F) | UInt8(q << 4) : (byte.pointee & 0xF0) | UInt8(q)
      return d1 * Float(q) - m1
    case .q6_k:
      // ql[128], qh[64], scales[16] (i8), d (f16); two halves of 128, four quarters of 32.
      let d = half(p + 208)
      let h = i / 128, quarter = (i % 128) / 32, l = i % 32
      let sc = Float(Int8(bitPattern: p[192 + h * 8 + l / 16 + 2 * quarter]))
      let a = d * sc
      let q = code(x, a, 0, -32, 31) + 32
      let ql = p + h * 64 + l + (quarter & 1) * 32
      ql.pointee =
        quarter >= 2
        ? (ql.pointee & 0x0F) | UInt8((q & 0xF) << 4) : (ql.pointee & 0xF0) | UInt8(q & 0xF)
      let qh = p + 128 + h * 32 + l
      let shift = UInt8(2 * quarter)
      qh.pointee = (qh.pointee & ~(3 << shift)) | UInt8((q >> 4) & 3) << shift
      return a * Float(q - 32)
    case .q4_0:
      // d (f16), qs[16]: weights 0…15 in the low nibbles, 16…31 in the high ones.
      let d = half(p)
      let q = code(x, d, 0, -8, 7)
      let byte = p + 2 + i % 16
      byte.pointee =
        i >= 16 ? (byte.pointee & 0x0F) | UInt8((q + 8) << 4) : (byte.pointee & 0xF0) | UInt8(q + 8)
      return Float(q) * d
    case .q5_0:
      // d (f16), qh (u32: bit j is weight j's fifth bit), qs[16] as Q4_0's.
      let d = half(p)
      let q = code(x, d, 0, -16, 15) + 16
      let byte = p + 6 + i % 16
      byte.pointee =
        i >= 16
        ? (byte.pointee & 0x0F) | UInt8((q & 0xF) << 4) : (byte.pointee & 0xF0) | UInt8(q & 0xF)
      let hb = p + 2 + i / 8
      let bit = UInt8(1) << UInt8(i % 8)
      hb.pointee = q >= 16 ? hb.pointee | bit : hb.pointee & ~bit
      return Float(q - 16) * d
    case .q8_0:
      let d = half(p)
      let q = code(x, d, 0, -127, 127)
      p[2 + i] = UInt8(bitPattern: Int8(q))
      return Float(q) * d
    default:
      preconditionFailure("GGMLGridRounder.supported")
    }
  }
}
