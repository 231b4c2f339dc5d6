/// `Array.withUnsafeBytes` for a body with a typed error (the standard one only rethrows `any Error`).
@inlinable package func withBytes<R, E: Error>(
  _ a: [UInt8], _ body: (UnsafeRawBufferPointer) throws(E) -> R
) throws(E) -> R {
  try a.withUnsafeBytes { p in Result { () throws(E) -> R in try body(p) } }.get()
}
