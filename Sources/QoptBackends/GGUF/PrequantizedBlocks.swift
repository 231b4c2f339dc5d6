import Dispatch
import QoptFormats
import QoptIR

/// Packs integer weights the IR already quantized into ggml blocks without requantizing, when
/// the block type holds them exactly:
///
/// - `q8_0` (`d·q`, int8 q, f16 d per 32): any symmetric scheme of ≤ 8 bits, or asymmetric of
///   ≤ 7 bits (q − zp still fits int8), with f16-exact scales.
/// - `q4_0` (`d·(n − 8)`, n in 0…15): symmetric schemes of ≤ 4 bits with f16-exact scales.
/// - `q4_1` (`d·n + m`): any scheme of ≤ 4 bits with f16-exact `d = s` and `m = −s·(zp + 8)`.
/// - `f32`: the dequantized values (exact in f32).
///
/// In every case groups must not straddle a 32-value block: the row length is a multiple of 32
/// and the group size a multiple of 32 (or one scale per row / tensor). The products are exact
/// in f32, so ggml's decoders give bit-for-bit the IR's `scale · (code − zp)`.
enum PrequantizedBlocks {
  /// Why `q` cannot be packed as `type` exactly, or nil when it can.
  static func obstacle(_ q: QuantizedTensor, as type: GGMLType) -> String? {
    if case .ggml(let k) = q.scheme {
      // The IR holds ggml's blocks: written as they are, or decoded to f32.
      return Int(type.rawValue) == k.rawValue || type == .f32
        ? nil : "its \(k.name) blocks would be requantized to \(type.name)"
    }
    guard case .int(let s) = q.scheme else {
      return "scheme \(q.scheme) has no exact GGUF form in this backend"
    }
    guard q.shape.count == 2 else { return "only 2-D quantized weights can be packed" }
    if type == .f32 { return nil }
    guard type.isQuantized else {
      return
        "an already-quantized weight would be rounded by \(type.name); emit it as q8_0/q4_0/q4_1 (exact) or f32"
    }
    let cols = q.shape[1]
    guard cols % 32 == 0 else {
      return "row length \(cols) is not a multiple of the \(type.name) block (32)"
    }
    if case .group(let g) = s.granularity, g % 32 != 0 {
      return
        "group size \(g) does not align with \(type.name)'s 32-value blocks (needs a multiple of 32)"
    }
    switch type {
    case .q8_0:
      if s.symmetric ? s.bits > 8 : s.bits > 7 {
        return "asymmetric \(s.bits)-bit codes minus zero points do not fit q8_0's int8 range"
      }
    case .q4_0:
      guard s.bits <= 4 else { return "\(s.bits)-bit codes do not fit q4_0's 4-bit range" }
      guard s.symmetric else {
        return "q4_0 has no zero point; asymmetric weights pack exactly as q4_1"
      }
    case .q4_1:
      guard s.bits <= 4 else { return "\(s.bits)-bit codes do not fit q4_1's 4-bit range" }
    default: break
    }
    let scales = q.scale.floats()
    let zeros = q.zeroPoint?.int8s()
    for (i, sc) in scales.enumerated() {
      guard isF16Exact(sc) else {
        return "scale \(sc) (group \(i)) is not exactly representable as the f16 block scale"
      }
      if type == .q4_1 {
        let m = -sc * Float(Int(zeros?[i] ?? 0) + 8)
        guard isF16Exact(m) else {
          return "offset \(m) (group \(i)) is not exactly representable as q4_1's f16 minimum"
        }
      }
    }
    return nil
  }

  static func isF16Exact(_ v: Float) -> Bool { v.isFinite && Float(Float16(v)) == v }

  /// Encodes rows `rowOrder` (a permutation, or identity) of `q` as `type` (already checked),
  /// rows split across `threads` workers.
  static func encode(
    _ q: QuantizedTensor, as type: GGMLType, rowOrder: [Int]?, threads: Int = 1
  ) -> [UInt8] {
    if case .ggml = q.scheme { return blocks(q, as: type, rowOrder: rowOrder) }
    guard case .int(let s) = q.scheme else { return [] }
    let (rows, cols) = (q.shape[0], q.shape[1])
    let scales = q.scale.floats()
    let zeros = q.zeroPoint?.int8s()
    let gpr = s.granularity.groupsPerRow(columns: cols)
    let gs: Int = if case .group(let g) = s.granularity { g } else { cols }
    let perTensor = s.granularity == .tensor
    var out = [UInt8](repeating: 0, count: type.byteCount(elements: rows * cols))
    guard rows > 0, cols > 0 else { return out }
    q.codes.withUnsafeBytes { raw in
      out.withUnsafeMutableBytes { o in
        nonisolated(unsafe) let codes = raw.bindMemory(to: Int8.self)
        nonisolated(unsafe) let dst = o.baseAddress!  // safe: rows·cols > 0
        let workers = max(1, min(threads, rows / 64))
        DispatchQueue.concurrentPerform(iterations: workers) { w in
          for r in (rows * w / workers)..<(rows * (w + 1) / workers) {
            let src = rowOrder?[r] ?? r
            let row = codes.baseAddress! + src * cols  // safe: non-empty
            func group(_ c: Int) -> Int { perTensor ? 0 : src * gpr + c / gs }
            if type == .f32 {
              // `scale · (code − zp)`, as QuantizedTensor.dequantized() computes it.
              for c in 0..<cols {
                let gi = group(c)
                let v = scales[gi] * (Float(row[c]) - Float(zeros?[gi] ?? 0))
                dst.storeBytes(
                  of: v.bitPattern.littleEndian, toByteOffset: 4 * (r * cols + c), as: UInt32.self)
              }
              continue
            }
            let bpr = cols / 32
            for b in 0..<bpr {
              let gi = group(32 * b)
              let sc = scales[gi]
              let z = Int(zeros?[gi] ?? 0)
              let p = dst + (r * bpr + b) * type.typeSize
              let base = 32 * b
              switch type {
              case .q8_0:
                BlockQuantizers.storeF16(sc, p)
                for i in 0..<32 {
                  p.storeBytes(
                    of: Int8(truncatingIfNeeded: Int(row[base + i]) - z), toByteOffset: 2 + i,
                    as: Int8.self)
                }
              case .q4_0, .q4_1:
                BlockQuantizers.storeF16(sc, p)
                let off = type == .q4_0 ? 2 : 4
                if type == .q4_1 { BlockQuantizers.storeF16(-sc * Float(z + 8), p + 2) }
                for j in 0..<16 {
                  let a = UInt8(truncatingIfNeeded: Int(row[base + j]) + 8)
                  let b2 = UInt8(truncatingIfNeeded: Int(row[base + j + 16]) + 8)
                  p.storeBytes(of: (a & 0xF) | (b2 << 4), toByteOffset: off + j, as: UInt8.self)
                }
              default: break
              }
            }
          }
        }
      }
    }
    return out
  }

  /// A `!q.ggml<…>` weight's block rows as they are (rows in `rowOrder`), or its decoded
  /// values for `f32`: nothing is requantized.
  private static func blocks(_ q: QuantizedTensor, as type: GGMLType, rowOrder: [Int]?) -> [UInt8] {
    let rows = q.shape[0]
    if type == .f32 {
      let (cols, v) = (q.shape[1], q.dequantized())
      var out = [UInt8]()
      out.reserveCapacity(4 * v.count)
      for r in 0..<rows {
        let src = rowOrder?[r] ?? r
        for c in 0..<cols {
          withUnsafeBytes(of: v[src * cols + c].bitPattern.littleEndian) { out += $0 }
        }
      }
      return out
    }
    let all = q.codes.bytes
    guard let rowOrder else { return all }
    let rb = rows == 0 ? 0 : all.count / rows
    var out = [UInt8]()
    out.reserveCapacity(all.count)
    for r in 0..<rows { out += all[(rowOrder[r] * rb)..<((rowOrder[r] + 1) * rb)] }
    return out
  }
}
