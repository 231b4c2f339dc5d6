/// A GGUF metadata value with its wire type (reference/gguf.md §1, "Metadata value types"), as
/// `GGUFFile` reads it and the GGUF backend writes it. (Not `indirect`: arrays already hold their
/// elements out of line, and boxing every case cost one allocation per vocabulary entry.)
public enum GGUFValue: Hashable, Sendable {
  case u8(UInt8), i8(Int8), u16(UInt16), i16(Int16), u32(UInt32), i32(Int32), f32(Float)
  case bool(Bool), string(String)
  /// Elements of one type (`elementType`), possibly empty.
  case array(elementType: UInt32, [GGUFValue])
  case u64(UInt64), i64(Int64), f64(Double)

  /// The wire type id.
  public var typeID: UInt32 {
    switch self {
    case .u8: 0
    case .i8: 1
    case .u16: 2
    case .i16: 3
    case .u32: 4
    case .i32: 5
    case .f32: 6
    case .bool: 7
    case .string: 8
    case .array: 9
    case .u64: 10
    case .i64: 11
    case .f64: 12
    }
  }

  /// An array of strings.
  public static func strings(_ s: [String]) -> GGUFValue { .array(elementType: 8, s.map { .string($0) }) }

  /// The value of an unsigned integer case.
  public var unsignedValue: UInt64? {
    switch self {
    case .u8(let v): UInt64(v)
    case .u16(let v): UInt64(v)
    case .u32(let v): UInt64(v)
    case .u64(let v): v
    default: nil
    }
  }

  /// The value of an integer case, if it fits an `Int`.
  public var intValue: Int? {
    switch self {
    case .i8(let v): Int(v)
    case .i16(let v): Int(v)
    case .i32(let v): Int(v)
    case .i64(let v): Int(v)
    default: unsignedValue.flatMap { $0 <= UInt64(Int.max) ? Int($0) : nil }
    }
  }

  /// The value of a float or integer case.
  public var doubleValue: Double? {
    switch self {
    case .f32(let v): Double(v)
    case .f64(let v): v
    case .i8(let v): Double(v)
    case .i16(let v): Double(v)
    case .i32(let v): Double(v)
    case .i64(let v): Double(v)
    default: unsignedValue.map(Double.init)
    }
  }

  public var stringValue: String? {
    if case .string(let s) = self { return s }
    return nil
  }

  public var boolValue: Bool? {
    if case .bool(let b) = self { return b }
    return nil
  }

  public var arrayValue: [GGUFValue]? {
    if case .array(_, let a) = self { return a }
    return nil
  }

  /// Appends the value's encoding (without its type id) to `out`.
  package func encode(into out: inout [UInt8]) {
    func le<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
    switch self {
    case .u8(let v): out.append(v)
    case .i8(let v): out.append(UInt8(bitPattern: v))
    case .u16(let v): le(v)
    case .i16(let v): le(v)
    case .u32(let v): le(v)
    case .i32(let v): le(v)
    case .f32(let v): le(v.bitPattern)
    case .bool(let v): out.append(v ? 1 : 0)
    case .string(let s):
      let b = Array(s.utf8)
      le(UInt64(b.count))
      out += b
    case .array(let t, let xs):
      le(t)
      le(UInt64(xs.count))
      for x in xs { x.encode(into: &out) }
    case .u64(let v): le(v)
    case .i64(let v): le(v)
    case .f64(let v): le(v.bitPattern)
    }
  }
}
