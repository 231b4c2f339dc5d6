import QoptIR

/// Owned f32 storage for a converted or dequantized weight.
final class FloatBuffer: @unchecked Sendable {
  let pointer: UnsafeMutablePointer<Float>
  let count: Int
  init(count: Int) {
    self.count = count
    pointer = .allocate(capacity: max(count, 1))
  }
  deinit { pointer.deallocate() }
}

/// A weight as f32 values the kernels can read: a zero-copy view of a dense f32 tensor
/// (mapped or owned), or a converted/dequantized copy that lives as long as the view.
public struct WeightView: @unchecked Sendable {
  public let shape: [Int]
  public let pointer: UnsafePointer<Float>
  /// Keeps the bytes behind `pointer` alive.
  let owner: Any

  public var count: Int { shape.reduce(1, *) }

  /// Resolves a weight-store entry; f32 tensors are used in place.
  static func make(_ entry: WeightStore.Entry, name: String) throws(RuntimeError) -> WeightView {
    switch entry {
    case .dense(let t):
      if t.dtype == .f32, let p = t.withUnsafeBytes({ $0.baseAddress }), Int(bitPattern: p) % 4 == 0 {
        return WeightView(shape: t.shape, pointer: p.assumingMemoryBound(to: Float.self), owner: t)
      }
      let buf = FloatBuffer(count: t.count)
      t.readFloats(into: UnsafeMutableBufferPointer(start: buf.pointer, count: t.count))
      return WeightView(shape: t.shape, pointer: UnsafePointer(buf.pointer), owner: buf)
    case .quantized(let q):
      return try dequantize(q, name: name)
    }
  }

  /// `scale[row, col / group] · (code − zeroPoint[row, col / group])` for integer schemes.
  static func dequantize(_ q: QuantizedTensor, name: String) throws(RuntimeError) -> WeightView {
    guard case .int(let s) = q.scheme, q.shape.count == 2 else {
      throw RuntimeError("weight @\(name): the runtime dequantizes integer schemes only, not \(Printer.scheme(q.scheme))")
    }
    let rows = q.shape[0], cols = q.shape[1]
    let gpr = s.granularity.groupsPerRow(columns: cols)
    let gs: Int = if case .group(let n) = s.granularity { n } else { cols }
    let scales = q.scale.floats()
    let zeros = q.zeroPoint?.int8s()
    guard scales.count == (s.granularity == .tensor ? 1 : rows * gpr), zeros.map({ $0.count == scales.count }) ?? true,
      q.codes.count == rows * cols
    else { throw RuntimeError("weight @\(name): scale or zero-point shape does not match \(Printer.scheme(q.scheme))") }
    let buf = FloatBuffer(count: rows * cols)
    q.codes.withUnsafeBytes { raw in
      let codes = raw.bindMemory(to: Int8.self)
      for r in 0..<rows {
        for g in 0..<gpr {
          let gi = s.granularity == .tensor ? 0 : r * gpr + g
          let sc = scales[gi]
          let z = zeros.map { Float($0[gi]) } ?? 0
          let c0 = g * gs, c1 = min(cols, c0 + gs)
          for c in c0..<c1 { buf.pointer[r * cols + c] = sc * (Float(codes[r * cols + c]) - z) }
        }
      }
    }
    return WeightView(shape: q.shape, pointer: UnsafePointer(buf.pointer), owner: buf)
  }
}
