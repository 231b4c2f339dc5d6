// fuzz-modules: QoptSupport QoptIR CQoptCodecs QoptFormats
import QoptFormats
import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// Bytes → an importance-matrix file (GGUF when it starts with the magic, legacy `.dat`
/// otherwise) → `ImatrixFile.read`, every entry's per-column weights, and both writers; what
/// was read must read back the same from either layout's bytes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzImatrix(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  let path = "/tmp/qopt-fuzz-\(getpid()).imatrix"
  let f = fopen(path, "wb")
  fwrite(data, 1, size, f)
  fclose(f)
  guard let file = try? ImatrixFile.read(path: path) else { return 0 }
  for s in file.entries.values where s.isResolved {
    for e in 0..<s.experts { _ = s.columnWeights(expert: e) }
  }
  _ = file.legacyBytes()
  let g = file.ggufBytes()
  let out = fopen(path, "wb")
  g.withUnsafeBufferPointer { _ = fwrite($0.baseAddress, 1, $0.count, out) }
  fclose(out)
  if let back = try? ImatrixFile.read(path: path), back.entries.count != file.entries.count {
    abort()
  }
  return 0
}
