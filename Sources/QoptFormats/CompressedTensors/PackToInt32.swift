import CQoptCodecs
import Dispatch
import QoptIR

/// compressed-tensors' `pack_to_int32`: signed codes → unsigned (`+2^(b−1)`), laid out as a
/// dense little-endian bit stream per row, 32 bits per word (element 0 in the least significant
/// bits), a short last word zero-filled. Reference: `compressors/pack_quantized/helpers.py`.
package enum PackToInt32 {
  /// Words per row of `columns` codes of `bits` bits.
  package static func wordsPerRow(columns: Int, bits: Int) -> Int { (columns * bits + 31) / 32 }

  /// Packs a row-major `[rows, columns]` code matrix along its rows into `out`
  /// (`rows × wordsPerRow` words).
  package static func packRows(
    _ codes: UnsafeRawBufferPointer, rows: Int, columns: Int, bits: Int, into out: UnsafeMutablePointer<UInt32>
  ) {
    let wpr = wordsPerRow(columns: columns, bits: bits)
    let offset = 1 << (bits - 1)
    let mask = UInt64((1 << bits) - 1)
    let src = codes.bindMemory(to: Int8.self)
    if bits == 4 && columns % 8 == 0, let base = codes.baseAddress {
      // Rows of whole words are one bit stream: pack them in one call.
      qopt_pack_int4(
        base.assumingMemoryBound(to: Int8.self), rows * columns,
        UnsafeMutableRawPointer(out).assumingMemoryBound(to: UInt8.self), 0)
      #if _endian(big)
        for w in 0..<(rows * wpr) { out[w] = UInt32(littleEndian: out[w]) }
      #endif
      return
    }
    for r in 0..<rows {
      let row = out + r * wpr
      for w in 0..<wpr { row[w] = 0 }
      for c in 0..<columns {
        let u = UInt64(Int(src[r * columns + c]) + offset) & mask
        let bit = c * bits
        let lo = bit / 32, sh = bit % 32
        let v = u << sh
        row[lo] |= UInt32(truncatingIfNeeded: v)
        if sh + bits > 32 { row[lo + 1] |= UInt32(truncatingIfNeeded: v >> 32) }
      }
    }
  }

  /// Threads that pack one tensor.
  nonisolated(unsafe) package static var packThreads = 2

  /// Packs an i8 `[rows, columns]` tensor into an I32 `[rows, wordsPerRow]` tensor.
  package static func packRows(_ codes: TensorData, bits: Int) -> TensorData {
    let (rows, cols) = (codes.shape[0], codes.shape[1])
    let wpr = wordsPerRow(columns: cols, bits: bits)
    return TensorData.build(dtype: .i32, shape: [rows, wpr]) { out in
      codes.withUnsafeBytes { src in
        // Split by rows across the cores (the packed words of a row depend on that row alone).
        nonisolated(unsafe) let (s, o) = (src, out.bindMemory(to: UInt32.self).baseAddress!)  // safe: rows·wpr > 0
        let workers = max(1, min(packThreads, rows / 256))
        DispatchQueue.concurrentPerform(iterations: workers) { w in
          let lo = rows * w / workers, hi = rows * (w + 1) / workers
          packRows(UnsafeRawBufferPointer(rebasing: s[(lo * cols)..<(hi * cols)]), rows: hi - lo, columns: cols, bits: bits, into: o + lo * wpr)
        }
      }
    }
  }

  /// Packs a `[rows, groups]` zero-point tensor along dim 0 (the reference transposes, packs
  /// rows, transposes back): result `[ceil(rows·bits/32), groups]`.
  package static func packColumns(_ zeros: TensorData, bits: Int) -> TensorData {
    let (rows, cols) = (zeros.shape[0], zeros.shape[1])
    let z = zeros.int8s()
    var t = [Int8](repeating: 0, count: rows * cols)
    for r in 0..<rows { for c in 0..<cols { t[c * rows + r] = z[r * cols + c] } }
    let wpr = wordsPerRow(columns: rows, bits: bits)
    var packed = [UInt32](repeating: 0, count: cols * wpr)
    t.withUnsafeBytes { src in
      packed.withUnsafeMutableBufferPointer { packRows(src, rows: cols, columns: rows, bits: bits, into: $0.baseAddress!) }  // safe: non-empty
    }
    return TensorData.build(dtype: .i32, shape: [wpr, cols]) { out in
      let o = out.bindMemory(to: UInt32.self)
      for c in 0..<cols { for w in 0..<wpr { o[w * cols + c] = packed[c * wpr + w] } }
    }
  }

  /// Inverse of `packRows`: `[rows, columns]` signed codes from packed words.
  package static func unpackRows(_ words: UnsafeRawBufferPointer, rows: Int, columns: Int, bits: Int) -> [Int8] {
    [Int8](unsafeUninitializedCapacity: rows * columns) { out, n in
      // An empty tensor writes nothing.
      if let p = out.baseAddress {
        unpackRows(words, rows: rows, columns: columns, bits: bits, into: p)
      }
      n = rows * columns
    }
  }

  /// `unpackRows` into `out` (`rows · columns` codes).
  package static func unpackRows(
    _ words: UnsafeRawBufferPointer, rows: Int, columns: Int, bits: Int,
    into out: UnsafeMutablePointer<Int8>
  ) {
    let wpr = wordsPerRow(columns: columns, bits: bits)
    precondition(words.count >= 4 * rows * wpr, "packed words cover the rows")
    let offset = 1 << (bits - 1)
    let mask = UInt64((1 << bits) - 1)
    for r in 0..<rows {
      for c in 0..<columns {
        let bit = c * bits
        let lo = bit / 32, sh = bit % 32
        var v = UInt64(words.loadUnaligned(fromByteOffset: 4 * (r * wpr + lo), as: UInt32.self)) >> sh
        if sh + bits > 32 {
          v |= UInt64(words.loadUnaligned(fromByteOffset: 4 * (r * wpr + lo + 1), as: UInt32.self)) << (32 - sh)
        }
        out[r * columns + c] = Int8(Int(v & mask) - offset)
      }
    }
  }

}
