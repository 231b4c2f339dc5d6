import Dispatch
import QoptFormats
import QoptIR

/// The candidate schemes of one weight for `assign-schemes`: for each, the exact bytes its
/// backend writes and the quantization error it causes.
struct SchemeCandidate {
  var scheme: AssignedScheme
  var bytes: Int
  /// `Σ_j imp_j Σ_rows (w − q)²` (imp_j: the imatrix's mean x² of input column j, 1 without
  /// statistics).
  var error: Double
}

enum SchemeCandidates {
  /// `candidates=gguf`: llama-quantize's K-quants and 32-blocks, smallest first.
  static let gguf = [
    "q2_k", "q3_k", "q4_0", "iq4_nl", "q4_k", "q4_1", "q5_0", "q5_k", "q5_1", "q6_k", "q8_0",
  ]
  /// `candidates=ct`: what vLLM's compressed-tensors kernels load for a Linear.
  static let ct = ["int4-g128", "int4-g64", "int8"]

  /// The spellings a `candidates=` list names, each checked.
  static func spellings(_ list: [String]) throws -> [AssignedScheme] {
    var out: [AssignedScheme] = []
    for item in list {
      let names = item == "gguf" ? gguf : item == "ct" ? ct : [item]
      for n in names {
        guard let s = AssignedScheme(spelling: n) else {
          throw PassError(
            "candidates: '\(n)' is not a scheme (gguf, ct, or one of \(AssignedScheme.ggmlNames.joined(separator: ", ")), intB, intB-gG, nvfp4, fp8, float)"
          )
        }
        if !out.contains(s) { out.append(s) }
      }
    }
    return out
  }

  /// The scheme the backend really writes for a row of `columns`: a ggml type whose block does
  /// not divide the row takes llama.cpp's fallback (q4_k → q5_0 on 576-wide rows); nil when the
  /// scheme cannot hold the row at all (an int group that does not divide it, nvfp4 off 16).
  static func effective(_ s: AssignedScheme, columns: Int) -> AssignedScheme? {
    switch s {
    case .ggml(let n):
      guard let t = GGMLType(name: n) else { return nil }
      return .ggml(t.fallback(rowLength: columns).name)
    case .int(_, let g): return g == -1 || columns % g == 0 ? s : nil
    case .nvfp4: return columns % 16 == 0 ? s : nil
    case .fp8, .float: return s
    }
  }

  /// Bytes the backend writes for a `rows × columns` weight in `s` (tensor data only, no file
  /// header): GGUF blocks; compressed-tensors `weight_packed` (int32 words) + f16
  /// `weight_scale` + i64 `weight_shape`, fp8 codes + f32 per-row scales, nvfp4 nibbles + E4M3
  /// group scales + f32 global scale, float as 16-bit.
  static func bytes(_ s: AssignedScheme, rows: Int, columns: Int) -> Int {
    switch s {
    case .ggml(let n):
      return GGMLType(name: n).map { rows * $0.byteCount(elements: columns) } ?? 0
    case .int(let b, let g):
      let words = (columns * b + 31) / 32
      let groups = g == -1 ? 1 : (columns + g - 1) / g
      return rows * words * 4 + rows * groups * 2 + 16
    case .fp8: return rows * columns + rows * 4
    case .nvfp4: return rows * columns / 2 + rows * columns / 16 + 4
    case .float: return rows * columns * 2
    }
  }

  /// The weight quantized as `s` and decoded back to f32 (row-major `rows × columns`), with
  /// llama.cpp's importance-weighted encoders when `importance` is given (as the GGUF backend
  /// encodes it).
  static func roundTrip(
    _ w: [Float], rows: Int, columns: Int, as s: AssignedScheme, importance: [Float]?,
    threads: Int
  ) -> [Float] {
    switch s {
    case .ggml(let n):
      guard let t = GGMLType(name: n), t.isQuantized else {
        return w.map { Float(Float16($0)) }
      }
      var out = [Float](repeating: 0, count: w.count)
      let rowBytes = t.byteCount(elements: columns)
      let chunks = max(1, min(threads, rows))
      func run(_ impIn: UnsafePointer<Float>?) {
        w.withUnsafeBufferPointer { wIn in
          out.withUnsafeMutableBufferPointer { oIn in
            // safe: w and out hold rows × columns floats, imp (if any) columns; each task
            // writes its own rows.
            nonisolated(unsafe) let wp = wIn.baseAddress!
            nonisolated(unsafe) let o = oIn.baseAddress!
            nonisolated(unsafe) let imp = impIn
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
              var buf = [UInt8](repeating: 0, count: rowBytes)
              for r in stride(from: c, to: rows, by: chunks) {
                buf.withUnsafeMutableBytes { b in
                  BlockQuantizers.encode(
                    wp + r * columns, count: columns, as: t, into: b.baseAddress!,
                    importance: imp)
                  let y = BlockQuantizers.decode(
                    UnsafeRawBufferPointer(b), count: columns, type: t)
                  for j in 0..<columns { o[r * columns + j] = y[j] }
                }
              }
            }
          }
        }
      }
      if let importance {
        importance.withUnsafeBufferPointer { run($0.baseAddress) }
      } else {
        run(nil)
      }
      return out
    case .int(let b, let g):
      let scheme = IntScheme(
        bits: b, symmetric: true, granularity: g == -1 ? .channel : .group(g), scaleType: .f16)
      return w.withUnsafeBufferPointer {
        IntQuantizer(scheme: scheme, rule: .fullRange).quantize(
          $0, rows: rows, cols: columns, threads: threads
        ).dequantized()
      }
    case .fp8:
      return w.withUnsafeBufferPointer {
        FP8Quantizer.quantize($0, rows: rows, cols: columns, granularity: .channel).dequantized()
      }
    case .nvfp4:
      return w.withUnsafeBufferPointer {
        NVFP4Quantizer.quantize($0, rows: rows, cols: columns, threads: threads).dequantized()
      }
    case .float:
      return w.map { Float(Float16($0)) }
    }
  }

  /// `Σ_j imp_j Σ_rows (w − q)²` in f64.
  static func weightedError(
    _ w: [Float], _ q: [Float], columns: Int, importance: [Float]?
  )
    -> Double
  {
    var perColumn = [Double](repeating: 0, count: columns)
    for i in w.indices {
      let d = Double(w[i] - q[i])
      perColumn[i % columns] += d * d
    }
    guard let importance else { return perColumn.reduce(0, +) }
    var total = 0.0
    for j in 0..<columns { total += Double(importance[j]) * perColumn[j] }
    return total
  }
}
