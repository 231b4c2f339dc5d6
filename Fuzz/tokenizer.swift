// fuzz-modules: QoptSupport QoptIR CQoptCodecs QoptFormats
import QoptFormats
import QoptIR

/// Bytes → `tokenizer.json` → the BPE tokenizer loader (vocab, merges, added tokens,
/// pre-tokenizers), then a fixed text encoded: every id must lie in the vocabulary.
/// (GGUF vocabularies reach the same loader through the `gguf` target.)
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenizer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  guard let tok = try? Tokenizer(json: Array(UnsafeBufferPointer(start: data, count: size)), file: "fuzz.json") else { return 0 }
  for id in tok.encode("Hello world, 1234 — ünïcödé <|endoftext|> 's 'll\n\n  x") where id < 0 || Int(id) >= tok.vocabularySize {
    fatalError("token id \(id) outside the vocabulary of \(tok.vocabularySize)")
  }
  return 0
}
