/// A GGUF source's `tokenizer.*` metadata records kept verbatim, as a GGUF file with no tensors,
/// in the weight store under `blobName`: the GGUF importer stores them, the GGUF backend copies
/// them record for record (no round trip through tokenizer.json, llama.cpp-only keys survive),
/// and directory backends leave the blob out.
public enum GGUFTokenizerRecords {
  /// The weight-store name of the carried records.
  public static let blobName = "tokenizer.gguf"
}
