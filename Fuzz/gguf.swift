// fuzz-modules: QoptSupport QoptIR CQoptCodecs QoptFormats QoptFrontends
import QoptFormats
import QoptFrontends
import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// Bytes → a `.gguf` file → header, metadata and tensor infos (`GGUFFile`), every decodable
/// tensor dequantized, the tokenizer synthesized from `tokenizer.ggml.*` and loaded, then the
/// whole llama lowering (`GGUFImporter.lower`). Errors are fine; traps, leaks and hangs are not.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGGUF(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  let path = "/tmp/qopt-fuzz-\(getpid()).gguf"
  let f = fopen(path, "wb")
  fwrite(data, 1, size, f)
  fclose(f)
  guard let g = try? GGUFFile(path: path) else { return 0 }
  for t in g.tensors where GGUFDequant.supports(t.type) && t.elementCount <= 1 << 16 {
    var out = [Float](repeating: 0, count: t.elementCount)
    out.withUnsafeMutableBufferPointer { p in
      if let base = p.baseAddress { GGUFDequant.decode(t.type, g.bytes(of: t), count: t.elementCount, into: base) }
    }
  }
  if let json = try? GGUFTokenizerJSON.synthesize(g), let tok = try? Tokenizer(json: json, file: path) {
    _ = tok.encode("Hello world, 123 tokens!")
  }
  _ = try? GGUFImporter.lower(g)
  return 0
}
