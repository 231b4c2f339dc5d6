import Dispatch
import QoptFormats
import QoptIR

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// GGUF (`llama` architecture) → IR, with Hugging Face tensor names and layout.
///
/// Every tensor becomes an f32 tensor decoded on first use (`TensorData(deferredF32:)`), into
/// memory the module owns; Q/K rows are put back in HF order (gguf.md §3) while decoding, row
/// by row, so no second copy exists. Streaming emitters decode row by row and never hold a
/// whole f32 tensor; evaluating an imported GGUF holds one f32 copy of the weights. The tokenizer is stored as a
/// tokenizer.json synthesized from `tokenizer.ggml.*` (see `GGUFTokenizerJSON`).
public enum GGUFImporter {
  /// Threads that decode one tensor's rows (the machine's cores by default).
  nonisolated(unsafe) public static var decodeThreads = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

  /// `keepQuantized`: Q8_0 and Q4_0 tensors become quantized IR weights (int8 / int4
  /// symmetric, group 32, f16 scales — the same codes and scales) instead of f32, so a GGUF
  /// qopt wrote imports back as what it was made from and re-emits byte for byte.
  public static func importModel(path: String, keepQuantized: Bool = false) throws(FrontendError) -> Module {
    try lower(GGUFFile(path: path), keepQuantized: keepQuantized)
  }

  public static func lower(_ g: GGUFFile, keepQuantized: Bool = false) throws(FrontendError) -> Module {
    let family = try familyConfig(g)
    let config: LlamaConfig
    if let family {
      config = try HFImporter.readConfig(json: family, path: g.path)
    } else {
      config = try self.config(of: g)
    }
    let store = WeightStore()
    var sourceTypes: [String: String] = [:]
    for t in g.tensors {
      if family != nil, let arch = g["general.architecture"]?.stringValue {
        try addFamilyTensor(
          g, t, arch: arch, headDim: config.headDim, keepQuantized: keepQuantized, store: store,
          sourceTypes: &sourceTypes)
        continue
      }
      guard let hf = hfName(t.name) else {
        if t.name == "rope_freqs.weight" {
          throw FrontendError(file: g.path, offset: t.infoOffset, "tensor 'rope_freqs.weight' (Llama-3 rope scaling baked into frequencies) is not supported")
        }
        throw FrontendError(file: g.path, offset: t.infoOffset, "unexpected tensor '\(t.name)' for the llama architecture")
      }
      guard GGUFDequant.supports(t.type) else {
        throw FrontendError(file: g.path, offset: t.infoOffset, "tensor '\(t.name)': ggml type \(t.type.name) cannot be decoded (supported: f32, f16, bf16, q8_0, q4_0, q4_1, q4_k, q6_k)")
      }
      let heads: Int? =
        t.name.hasSuffix(".attn_q.weight") || t.name.hasSuffix(".attn_q.bias") ? config.numAttentionHeads
        : t.name.hasSuffix(".attn_k.weight") || t.name.hasSuffix(".attn_k.bias") ? config.numKeyValueHeads : nil
      if keepQuantized, let q = quantized(g, t, unpermuteHeads: heads, headDim: config.headDim) {
        store.set(hf, .quantized(q))
      } else {
        store.set(hf, .dense(deferred(g, t, unpermuteHeads: heads, headDim: config.headDim)))
      }
      sourceTypes[hf] = t.type.name
    }
    if let tok = try GGUFTokenizerJSON.synthesize(g) {
      store.set(LlamaLowering.tokenizerWeight, .dense(TensorData(dtype: .u8, shape: [tok.count], bytes: tok)))
    }
    for (name, bytes) in [
      (LlamaLowering.tokenizerConfigFile, GGUFServingFiles.tokenizerConfig(g, contextLength: config.maxPositionEmbeddings)),
      (LlamaLowering.generationConfigFile, GGUFServingFiles.generationConfig(g)),
    ] {
      if let bytes { store.set(name, .dense(TensorData(dtype: .u8, shape: [bytes.count], bytes: bytes))) }
    }
    if let kv = tokenizerRecords(g) {
      store.set(GGUFTokenizerRecords.blobName, .dense(TensorData(dtype: .u8, shape: [kv.count], bytes: kv)))
    }
    let module = try LlamaLowering.lower(config, store: store, sourceTypes: sourceTypes, file: g.path)
    // As for HF directories: backends write the family's config keys back from it.
    if let family { module.attributes["hf_config"] = .string(family.pretty) }
    if store.contains(GGUFTokenizerRecords.blobName) {
      // Named by an attribute, so a saved `.ir` keeps it in the sidecar like tokenizer.json.
      module.attributes["tokenizer_gguf"] = .symbol(GGUFTokenizerRecords.blobName)
    }
    // The model's identity travels on to what qopt writes (GGUF `general.*` metadata).
    for key in ["general.name", "general.basename", "general.finetune", "general.size_label", "general.license", "general.organization"] {
      if let v = g[key]?.stringValue { module.attributes[key] = .string(v) }
    }
    return module
  }

  /// The source's `tokenizer.*` metadata records, verbatim, as a GGUF file of no tensors: a GGUF
  /// written from this module carries them over byte for byte (no round trip through
  /// tokenizer.json, and llama.cpp-only keys survive). nil when the file has none.
  static func tokenizerRecords(_ g: GGUFFile) -> [UInt8]? {
    let records = g.metadata.compactMap { $0.key.hasPrefix("tokenizer.") ? g.rawRecord($0.key) : nil }
    guard !records.isEmpty else { return nil }
    var out = Array("GGUF".utf8)
    func le<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
    le(UInt32(3))
    le(UInt64(0))
    le(UInt64(records.count))
    out.reserveCapacity(out.count + records.reduce(0) { $0 + $1.count })
    for r in records { out.append(contentsOf: r) }
    return out
  }

  /// One tensor as f32 decoded on first use (or row by row by a streaming reader), with Q/K
  /// rows put back in HF order when `heads` is given: GGUF row `h·d + 2i + j` is HF row
  /// `h·d + j·d/2 + i`. Once a full decode is done the tensor's file pages are dropped, so the
  /// process never holds the quantized bytes and the f32 copy of a tensor at once.
  static func deferred(_ g: GGUFFile, _ t: GGUFTensorInfo, unpermuteHeads heads: Int?, headDim d: Int) -> TensorData {
    let file = g.file
    let start = g.dataStart + t.offset
    let info = t
    let rowElems = max(t.dims[0], 1)
    let rows = t.elementCount / rowElems
    let (be, bb) = t.type.blockLayout
    let rowBytes = rowElems / be * bb
    let permute = heads.map { $0 * d == rows && t.shape.count == 2 } ?? false
    var rowDecoder: (@Sendable (Range<Int>, UnsafeMutablePointer<Float>) -> Void)? = nil
    if !(heads != nil && t.shape.count == 1) {
      rowDecoder = { (range: Range<Int>, dst: UnsafeMutablePointer<Float>) in
        let src = file.bytes(offset: start, count: info.byteCount)
        for (k, hf) in range.enumerated() {
          let r = permute ? ggufRow(hf, d) : hf
          let rowSrc = UnsafeRawBufferPointer(rebasing: src[(r * rowBytes)..<((r + 1) * rowBytes)])
          GGUFDequant.decode(info.type, rowSrc, count: rowElems, into: dst + k * rowElems)
        }
      }
    }
    // The pages the row decoder paged in, dropped when a reader releases the tensor (rtn and
    // the backends decode its rows, then release it).
    let releaseInput: @Sendable () -> Void = {
      releasePages(file.bytes(offset: start, count: info.byteCount))
    }
    return TensorData(deferredF32: t.shape, fill: { raw in
      let src = file.bytes(offset: start, count: info.byteCount)
      decode(info, src, unpermuteHeads: heads, headDim: d, into: raw.bindMemory(to: Float.self))
      releasePages(src)
    }, rows: rowDecoder, releaseInput: releaseInput)
  }

  /// A Q8_0 / Q4_0 matrix as IR codes and scales: `d·q` is int8 symmetric and `d·(n − 8)` is
  /// int4 symmetric with code `n − 8`, each with an f16 scale per 32 weights of a row. Other
  /// types (and 1-D tensors) have no exact IR form here: nil.
  static func quantized(_ g: GGUFFile, _ t: GGUFTensorInfo, unpermuteHeads heads: Int?, headDim d: Int) -> QuantizedTensor? {
    guard t.type == .q8_0 || t.type == .q4_0, t.shape.count == 2, t.dims[0] % 32 == 0, t.dims[0] > 0 else { return nil }
    let cols = t.dims[0], rows = t.elementCount / cols, groups = cols / 32
    let bb = t.type == .q8_0 ? 34 : 18
    let permute = heads.map { $0 * d == rows } ?? false
    let src = g.bytes(of: t)
    var codes = [Int8](repeating: 0, count: rows * cols)
    var scales = [UInt16](repeating: 0, count: rows * groups)
    for r in 0..<rows {
      let dr = permute ? hfRow(r, d) : r
      for b in 0..<groups {
        let o = (r * groups + b) * bb
        scales[dr * groups + b] = UInt16(src[o]) | UInt16(src[o + 1]) << 8
        for j in 0..<32 {
          if t.type == .q8_0 {
            codes[dr * cols + b * 32 + j] = Int8(bitPattern: src[o + 2 + j])
          } else {
            let byte = src[o + 2 + j % 16]
            codes[dr * cols + b * 32 + j] = Int8(j < 16 ? byte & 0xF : byte >> 4) - 8
          }
        }
      }
    }
    let scheme = IntScheme(bits: t.type == .q8_0 ? 8 : 4, symmetric: true, granularity: .group(32), scaleType: .f16)
    return QuantizedTensor(
      scheme: .int(scheme), codes: TensorData(int8: codes, shape: [rows, cols]),
      scale: TensorData(dtype: .f16, shape: [rows, groups], bytes: scales.withUnsafeBytes { Array($0) }))
  }

  /// Decodes one tensor into `dst`, rows split across threads (decoding is exact per
  /// element, so the result does not depend on the split).
  static func decode(_ t: GGUFTensorInfo, _ src: UnsafeRawBufferPointer, unpermuteHeads heads: Int?, headDim d: Int, into dst: UnsafeMutableBufferPointer<Float>) {
    let shape = t.shape
    let rowElems = t.dims[0]
    let rows = t.elementCount / max(rowElems, 1)
    let (be, bb) = t.type.blockLayout
    let rowBytes = rowElems / be * bb
    guard let base = dst.baseAddress, t.elementCount > 0 else { return }
    // 1-D q/k biases permute single elements: treat each element as a row.
    if heads != nil && shape.count == 1, let heads, heads * d == t.elementCount {
      var tmp = [Float](repeating: 0, count: t.elementCount)
      tmp.withUnsafeMutableBufferPointer { _ = GGUFDequant.decode(t.type, src, count: t.elementCount, into: $0.baseAddress!) }  // safe: non-empty
      for r in 0..<t.elementCount { base[hfRow(r, d)] = tmp[r] }
      return
    }
    let permute = heads.map { $0 * d == rows } ?? false
    nonisolated(unsafe) let dstBase = base
    nonisolated(unsafe) let srcBytes = src
    let workers = max(1, min(decodeThreads, rows * rowElems / (1 << 18)))
    DispatchQueue.concurrentPerform(iterations: workers) { w in
      for r in (rows * w / workers)..<(rows * (w + 1) / workers) {
        let dr = permute ? hfRow(r, d) : r
        let rowSrc = UnsafeRawBufferPointer(rebasing: srcBytes[(r * rowBytes)..<((r + 1) * rowBytes)])
        GGUFDequant.decode(t.type, rowSrc, count: rowElems, into: dstBase + dr * rowElems)
      }
    }
  }

  /// Tells the kernel the mapped pages fully inside `bytes` may be dropped (they re-read from
  /// the file if touched again).
  static func releasePages(_ bytes: UnsafeRawBufferPointer) {
    guard let base = bytes.baseAddress else { return }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let start = (Int(bitPattern: base) + page - 1) / page * page
    let end = (Int(bitPattern: base) + bytes.count) / page * page
    guard end > start, let p = UnsafeMutableRawPointer(bitPattern: start) else { return }
    madvise(p, end - start, Int32(MADV_DONTNEED))
  }

  /// The HF row of GGUF row `r` inside heads of `d` rows.
  @inline(__always) static func hfRow(_ r: Int, _ d: Int) -> Int {
    let h = r / d, w = r % d
    return h * d + (w % 2) * (d / 2) + w / 2
  }

  /// The GGUF row of HF row `r` (the inverse of `hfRow`).
  @inline(__always) static func ggufRow(_ r: Int, _ d: Int) -> Int {
    let h = r / d, j = r % d, half = d / 2
    return h * d + (j < half ? 2 * j : 2 * (j - half) + 1)
  }

  /// GGUF tensor name → Hugging Face name (gguf.md §3).
  static func hfName(_ n: String) -> String? {
    GGUFTensorNames.hf(gguf: n)
  }

  /// The GGUF metadata key each config.json size comes from (for errors).
  static let ggufKeys = [
    "hidden_size": "llama.embedding_length", "intermediate_size": "llama.feed_forward_length",
    "num_hidden_layers": "llama.block_count", "num_attention_heads": "llama.attention.head_count",
    "num_key_value_heads": "llama.attention.head_count_kv", "head_dim": "llama.rope.dimension_count",
    "vocab_size": "llama.vocab_size", "max_position_embeddings": "llama.context_length",
  ]

  /// The HF configuration from `llama.*` metadata.
  static func config(of g: GGUFFile) throws(FrontendError) -> LlamaConfig {
    func fail(_ key: String, _ m: String) -> FrontendError {
      FrontendError(file: g.path, offset: g.offset(ofKey: key), "metadata '\(key)': \(m)")
    }
    guard let arch = g["general.architecture"]?.stringValue else {
      throw FrontendError(file: g.path, key: "general.architecture", "missing (supported architectures: llama, qwen3, qwen3moe, gemma3)")
    }
    guard arch == "llama" else { throw fail("general.architecture", "unsupported architecture '\(arch)' (supported: llama, qwen3, qwen3moe, gemma3)") }
    func int(_ k: String, default dv: Int? = nil) throws(FrontendError) -> Int {
      guard let v = g["llama." + k] else {
        if let dv { return dv }
        throw FrontendError(file: g.path, key: "llama." + k, "missing metadata key")
      }
      guard let i = v.intValue, i > 0 else { throw fail("llama." + k, "must be a positive integer") }
      return i
    }
    func float(_ k: String, default dv: Double) throws(FrontendError) -> Double {
      guard let v = g["llama." + k] else { return dv }
      guard let x = v.doubleValue else { throw fail("llama." + k, "must be a number") }
      // f32 metadata: keep the shortest decimal that reads back to the same f32 (1e-05, not 9.9999997e-06).
      switch v {
      case .f32, .f64: return Double("\(Float(x))") ?? x
      default: return x
      }
    }
    if let t = g["llama.rope.scaling.type"]?.stringValue, t != "none" {
      throw fail("llama.rope.scaling.type", "rope scaling '\(t)' is not supported (supported: none; llama3 scaling via config.json)")
    }
    let hidden = try int("embedding_length")
    let heads = try int("attention.head_count")
    let embd = g.tensor(named: "token_embd.weight")
    let vocab = try int("vocab_size", default: g["tokenizer.ggml.tokens"]?.arrayValue?.count ?? embd?.dims.last ?? 0)
    let headDim = try int("rope.dimension_count", default: try int("attention.key_length", default: hidden / heads))
    var c = LlamaConfig(
      modelType: "llama", hiddenSize: hidden, intermediateSize: try int("feed_forward_length"),
      numHiddenLayers: try int("block_count"), numAttentionHeads: heads,
      numKeyValueHeads: try int("attention.head_count_kv", default: heads), headDim: headDim,
      rmsNormEps: try float("attention.layer_norm_rms_epsilon", default: 1e-5),
      ropeTheta: try float("rope.freq_base", default: 10000), vocabSize: vocab,
      maxPositionEmbeddings: try int("context_length", default: 2048),
      tieWordEmbeddings: g.tensor(named: "output.weight") == nil)
    if let (k, m) = c.sizeProblem {
      let gguf = ggufKeys[k] ?? k
      throw g.metadata.contains { $0.key == gguf } ? fail(gguf, m) : FrontendError(file: g.path, key: gguf, m)
    }
    guard c.numAttentionHeads % c.numKeyValueHeads == 0 else {
      throw fail("llama.attention.head_count_kv", "\(c.numKeyValueHeads) does not divide head_count \(c.numAttentionHeads)")
    }
    c.bosTokenId = g["tokenizer.ggml.bos_token_id"]?.intValue
    c.eosTokenId = g["tokenizer.ggml.eos_token_id"]?.intValue
    return c
  }
}
