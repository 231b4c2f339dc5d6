/// A dense row-major f32 activation tensor: what the interpreter passes between ops.
public struct Tensor: Sendable {
  public var shape: [Int]
  public var data: [Float]

  public init(shape: [Int], data: [Float]) {
    precondition(shape.reduce(1, *) == data.count, "tensor element count")
    self.shape = shape
    self.data = data
  }

  /// An uninitialized tensor that `fill` writes completely (no zeroing pass).
  public init(shape: [Int], fill: (UnsafeMutablePointer<Float>) -> Void) {
    let n = shape.reduce(1, *)
    self.shape = shape
    self.data = [Float](unsafeUninitializedCapacity: n) { buf, count in
      if let p = buf.baseAddress { fill(p) }
      count = n
    }
  }

  public var count: Int { data.count }
  /// Rows when viewed as a matrix `[rows, last]`.
  public var rows: Int { shape.count <= 1 ? 1 : shape.dropLast().reduce(1, *) }
  public var columns: Int { shape.last ?? 1 }
}
