// fuzz-modules: QoptSupport QoptIR
import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// Bytes → a safetensors file → the validating reader, then every tensor converted to floats.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  let path = "/tmp/qopt-fuzz-\(getpid()).safetensors"
  let f = fopen(path, "wb")
  fwrite(data, 1, size, f)
  fclose(f)
  if let file = try? SafetensorsFile(path: path) {
    for t in file.tensors where t.data.count < 1 << 20 { _ = t.data.floats() }
  }
  return 0
}
