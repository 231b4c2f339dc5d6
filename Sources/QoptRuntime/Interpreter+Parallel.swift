import Dispatch
import QoptIR

/// The interpreter's element-wise work on every core, and SwiGLU's `silu` and `mul` as one
/// pass. Why: the matrix products use all threads, and a 2-core machine otherwise runs the
/// norms, activations and products of a window on one core while the other waits. Every
/// element (every row, for a norm) is computed by the same code whichever part it falls in,
/// so the results do not depend on the thread count.
extension Interpreter {
  /// Calls `body(lo, hi)` for consecutive parts of `0..<n` on `attentionWorkers` threads, each
  /// part starting at a multiple of `align`; below 32 768 elements of work, one call on this
  /// thread (a thread hand-off costs more).
  func parallelParts(
    _ n: Int, align: Int, work: Int? = nil, _ body: @Sendable (_ lo: Int, _ hi: Int) -> Void
  ) {
    let parts = min(attentionWorkers, max(1, n / align))
    guard parts > 1, (work ?? n) >= 32768 else { return body(0, n) }
    DispatchQueue.concurrentPerform(iterations: parts) { p in
      let lo = p == 0 ? 0 : (p * n / parts) / align * align
      let hi = p == parts - 1 ? n : ((p + 1) * n / parts) / align * align
      if hi > lo { body(lo, hi) }
    }
  }

  /// Indices of the `silu` ops of `f` whose result is used once, by the `mul` right after.
  func siluMulPairs(_ f: Function) -> Set<Int> {
    if let s = siluMulFusions[ObjectIdentifier(f)] { return s }
    var uses: [ObjectIdentifier: Int] = [:]
    for op in f.body { for v in op.operands { uses[ObjectIdentifier(v), default: 0] += 1 } }
    var pairs = Set<Int>()
    for i in f.body.indices.dropLast() {
      let (a, b) = (f.body[i], f.body[i + 1])
      guard a.kind == .silu, b.kind == .mul, let r = a.result, uses[ObjectIdentifier(r)] == 1,
        b.operands.count == 2, b.operands.contains(where: { $0 === r })
      else { continue }
      pairs.insert(i)
    }
    siluMulFusions[ObjectIdentifier(f)] = pairs
    return pairs
  }

  /// `mul(silu(g), u)` (either operand order) as one pass: `silu` is op `siluOp`, `mul` the op
  /// after it.
  func siluMul(
    _ siluOp: Op, _ mul: Op, _ env: [ObjectIdentifier: RuntimeValue]
  ) throws(RuntimeError) -> RuntimeValue {
    let g = try tensor(env[ObjectIdentifier(siluOp.operands[0])], siluOp, "input")
    let other = mul.operands[0] === siluOp.result ? mul.operands[1] : mul.operands[0]
    let u = try tensor(env[ObjectIdentifier(other)], mul, "rhs")
    guard g.shape == u.shape else {
      throw RuntimeError("operand shapes \(g.shape) and \(u.shape) differ", at: mul)
    }
    return .tensor(
      Tensor(shape: g.shape) { y in
        g.data.withUnsafeBufferPointer { gp in
          u.data.withUnsafeBufferPointer { up in
            // safe: non-empty when filled
            nonisolated(unsafe) let (gp, up, y) = (gp.baseAddress!, up.baseAddress!, y)
            parallelParts(g.count, align: 8) { lo, hi in
              Kernels.siluMul(gp + lo, up + lo, count: hi - lo, into: y + lo)
            }
          }
        }
      })
  }
}
