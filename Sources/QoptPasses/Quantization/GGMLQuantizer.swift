import CQoptCodecs
import Dispatch
import QoptIR

/// ggml's block encoders (`ggml_quantize_chunk`, ported bit-exactly in `CQoptCodecs`) as a
/// weight quantizer: what `rtn<scheme=q4_k>` and the other ggml scheme names write.
///
/// With `importance` (per input column, llama-quantize's quant weights: the imatrix's mean x²),
/// the types that take one (all but Q8_0) run their importance-weighted search, as
/// llama-quantize does with `--imatrix`; without, the plain reference encoders.
///
/// Memory: the encoded blocks (about `rows·cols·bits/8` bytes); rows are split across `threads`.
enum GGMLQuantizer {
  static func quantize(
    _ w: UnsafeBufferPointer<Float>, rows: Int, cols: Int, as kind: GGMLBlockKind,
    importance: [Float]?, threads: Int
  ) -> QuantizedTensor {
    precondition(cols % kind.blockSize == 0 && w.count == rows * cols, "ggml row length")
    let rowBytes = kind.rowBytes(columns: cols)
    var out = [UInt8](repeating: 0, count: rows * rowBytes)
    guard rows > 0 else { return QuantizedTensor(ggml: kind, blocks: out, rows: 0) }
    let workers = max(1, min(threads, rows / 16))
    out.withUnsafeMutableBytes { o in
      nonisolated(unsafe) let dst = o.baseAddress!  // safe: rows > 0, cols > 0
      nonisolated(unsafe) let src = w.baseAddress!  // safe: as above
      let imp = importance
      DispatchQueue.concurrentPerform(iterations: workers) { i in
        let r0 = rows * i / workers, r1 = rows * (i + 1) / workers
        guard r1 > r0 else { return }
        let written = { (p: UnsafePointer<Float>?) in
          qopt_ggml_quantize(
            Int32(kind.rawValue), src + r0 * cols, dst + r0 * rowBytes, Int64(r1 - r0),
            Int64(cols), p)
        }
        let n = imp.map { $0.withUnsafeBufferPointer { written($0.baseAddress) } } ?? written(nil)
        precondition(n == (r1 - r0) * rowBytes, "ggml encoder wrote \(n) bytes")
      }
    }
    return QuantizedTensor(ggml: kind, blocks: out, rows: rows)
  }
}
