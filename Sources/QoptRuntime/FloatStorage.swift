/// A contiguous f32 buffer with a stable address, reused across iterations.
final class FloatStorage: @unchecked Sendable {
  private(set) var pointer: UnsafeMutablePointer<Float>
  private(set) var count: Int
  init(count: Int) {
    self.count = count
    pointer = .allocate(capacity: max(count, 1))
  }
  init(_ values: [Float]) {
    count = values.count
    pointer = .allocate(capacity: max(count, 1))
    values.withUnsafeBufferPointer {
      if let b = $0.baseAddress { pointer.update(from: b, count: count) }
    }
  }
  /// Makes room for `n` floats (contents undefined when it grows).
  func reserve(_ n: Int) {
    guard n > count else { return }
    pointer.deallocate()
    pointer = .allocate(capacity: n)
    count = n
  }
  func zero(_ n: Int) { pointer.update(repeating: 0, count: n) }
  var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
  deinit { pointer.deallocate() }
}
