// fuzz-modules: QoptSupport QoptIR
import QoptIR

/// Bytes → the JSON parser (config.json, tokenizer.json, safetensors headers all go through it).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  if let j = try? JSON.parse(UnsafeRawBufferPointer(start: data, count: size)) {
    _ = try? JSON.parse(j.serialized)
  }
  return 0
}
