import QoptIR

// Streamed weights: linear weights the executor does not hold, written into one scratch
// buffer each time a linear reads them.
//
// Why: an executor holding every weight of an 8B block in f32 holds 872 MB, and a tuning
// pass that keeps its own source copy, rounding offsets and gradients of each weight holds it
// four times over. Streamed, the block's weights cost one scratch of its largest linear
// (235 MB at 8B widths); the tuning pass writes its fake-quantized values in on the forward
// and again on the backward, and takes each gradient as soon as it is made
// (`weightGradientSink`), in the same scratch.

extension BlockExecutor {
  /// From now on linear weight `name` is written by `fill` (`rows · cols` floats, row-major)
  /// into the shared scratch whenever a linear reads it, on the forward and again on the
  /// backward's input gradient; the executor's own copy, if any, is dropped. The weight must
  /// be read by linears only (false otherwise, and nothing changes).
  @discardableResult
  package func stream(
    _ name: String, fill: @escaping (UnsafeMutablePointer<Float>) -> Void
  )
    -> Bool
  {
    guard let s = weightSlotByName[name], readOnlyByLinears(s) else { return false }
    weights[s] = nil
    streamed[s] = fill
    return true
  }

  /// Holds weight `name` again, filled once now by its filler (a no-op for a held weight):
  /// for callers that write it through `weightPointer(_:)` afterwards.
  package func hold(_ name: String) {
    guard let s = weightSlotByName[name], let fill = streamed[s] else { return }
    let held = FloatStorage(count: width[s])
    fill(held.pointer)
    weights[s] = held
    streamed[s] = nil
  }

  /// Whether weight `name` is streamed rather than held.
  package func isStreamed(_ name: String) -> Bool {
    weightSlotByName[name].map { streamed[$0] != nil } ?? false
  }

  /// The filler that decodes a stored weight: a deferred bf16/f16 tensor row-decoded without
  /// keeping a decoded copy, a quantized one dequantized (then dropped), f32 copied.
  static func decoder(_ entry: WeightStore.Entry) -> (UnsafeMutablePointer<Float>) -> Void {
    switch entry {
    case .dense(let t):
      return { p in
        let cols = max(t.shape.last ?? 1, 1)
        if !t.decodeRows(0..<(t.count / cols), into: p) {
          t.readFloats(into: UnsafeMutableBufferPointer(start: p, count: t.count))
        }
        t.releasePages()  // mapped pages or a decoded copy: read again on the next use
      }
    case .quantized(let q):
      return { p in
        // safe: a weight is non-empty
        q.dequantized().withUnsafeBufferPointer { p.update(from: $0.baseAddress!, count: $0.count) }
      }
    }
  }

  /// The weights a linear multiplies by: the held copy, or the streamed weight written into the
  /// scratch now.
  func linearWeight(_ w: Int) -> UnsafeMutablePointer<Float> {
    // safe: a weight slot is held or streamed
    guard let fill = streamed[w] else { return weights[w]!.pointer }
    let buffer = scratchForStreamed(width[w])
    timed("fill streamed weights") { fill(buffer.pointer) }
    return buffer.pointer
  }

  /// The scratch shared by every streamed weight, holding at least `n` floats.
  func scratchForStreamed(_ n: Int) -> FloatStorage {
    let buffer = weightScratch ?? FloatStorage(count: n)
    buffer.reserve(n)
    weightScratch = buffer
    return buffer
  }
}
