import QoptPasses

/// `-passes=` text → the pipeline parser: errors are fine, traps are not.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPipeline(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
  _ = try? PipelineParser.parse(text, registry: registry)
  return 0
}

nonisolated(unsafe) let registry = PassRegistry.builtin()
