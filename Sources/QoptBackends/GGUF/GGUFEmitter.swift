import Dispatch
import QoptFormats
import QoptIR
import Synchronization

/// Writes a llama-architecture GGUF v3 file that llama.cpp and the `gguf` package read:
/// `general.*` / `llama.*` / `tokenizer.*` metadata, tensors under GGUF names with Q and K rows
/// permuted into llama.cpp's adjacent-pair RoPE order, norms in F32, 2-D weights in the chosen
/// type (float weights quantized with llama.cpp's codecs, importance-weighted when the module
/// carries an importance matrix; IR-quantized weights packed exactly, or — with a mix —
/// requantized from their dequantized values as `llama-quantize --allow-requantize` does).
/// Layout: reference/gguf.md.
///
/// Memory: the encoded bytes of one tensor at a time; float sources are read in place
/// (memory-mapped when loaded from a sidecar, decoded row by row from a GGUF source).
public struct GGUFEmitter: WeightEmitter {
  public var formatName: String { "gguf" }
  public var types: GGUFTypeSelection
  public var threads: Int
  /// Receives the emitter's remarks (a requantized weight, an importance row that does not
  /// fit); the command line prints them as `remark:` lines.
  public var remark: @Sendable (String) -> Void = { _ in }
  /// Per-column quant weights by Hugging Face weight name, instead of the module's importance
  /// statistics (tests).
  package var importance: [String: [Float]]?

  public init(types: GGUFTypeSelection = GGUFTypeSelection(), threads: Int = 2) {
    self.types = types
    self.threads = max(1, threads)
  }

  struct PlannedTensor {
    var hf: String
    var gguf: String
    var type: GGMLType
    var shape: [Int]
    var rowOrder: [Int]?
    var entry: WeightStore.Entry
    /// An IR-quantized weight the type cannot hold exactly: encoded from its dequantized values.
    var requantize = false
    /// llama-quantize's per-column quant weights (one row of the importance matrix).
    var importance: [Float]?
  }

  public func check(_ module: Module, output: String) throws(BackendError) {
    _ = try plan(module, output: output)
  }

  public func emit(_ module: Module, to output: String) throws {
    let (metadata, tensors) = try plan(module, output: output)
    let threads = self.threads
    for t in tensors where t.requantize {
      remark(
        "\(t.hf): requantized to \(t.type.name) from its dequantized values (the IR's codes do not fit \(t.type.name) exactly), as llama-quantize --allow-requantize does"
      )
    }
    let entries = tensors.map { t in
      GGUFTensorEntry(name: t.gguf, shape: t.shape, type: t.type) { sink in
        switch t.entry {
        case .dense(let d):
          defer { d.releasePages() }
          try Self.encodeDense(
            d, as: t.type, rowOrder: t.rowOrder, importance: t.importance, threads: threads,
            to: sink)
        case .quantized(let q) where t.requantize:
          defer { q.codes.releasePages() }
          let d = TensorData(floats: q.dequantized(), shape: q.shape)
          try Self.encodeDense(
            d, as: t.type, rowOrder: t.rowOrder, importance: t.importance, threads: threads,
            to: sink)
        case .quantized(let q):
          defer { q.codes.releasePages() }
          try PrequantizedBlocks.encode(q, as: t.type, rowOrder: t.rowOrder, threads: threads)
            .withUnsafeBytes { try sink(0, $0) }
        }
      }
    }
    try GGUFFileWriter.write(
      metadata: metadata.values, raw: metadata.raw, tensors: entries, to: output)
  }

  /// The tensors as they will be written: source name, GGUF name, type, row-major shape.
  package func layout(
    _ module: Module, output: String
  ) throws(BackendError) -> [(hf: String, gguf: String, type: GGMLType, shape: [Int])] {
    try plan(module, output: output).tensors.map { ($0.hf, $0.gguf, $0.type, $0.shape) }
  }

  /// Validates every tensor and builds the metadata, before anything is written.
  func plan(
    _ module: Module, output: String
  ) throws(BackendError) -> (
    metadata: (values: [(String, GGUFValue)], raw: RawMetadata?), tensors: [PlannedTensor]
  ) {
    let weights = ModelWeights(module)
    let config = ModelConfig(module)
    let heads = LlamaMetadata.heads(config, module)
    if let rs = config.json["rope_scaling"],
      (rs["rope_type"] ?? rs["type"])?.stringValue == "llama3"
    {
      throw BackendError(
        output: output,
        "llama3 rope scaling must be baked into a rope_freqs tensor; not supported by this backend yet"
      )
    }
    var tensors: [PlannedTensor] = []
    var seen = Set<String>()
    let sourceTypes = DenseDType.sourceTypes(module)
    // Canonical order — Hugging Face names sorted as safetensors sorts them, which is the order
    // llama.cpp's converter writes — so the file does not depend on how the store was built.
    let names = weights.tensors.sorted().compactMap { hf in module.weights[hf].map { (hf, $0) } }
    let importance = self.importance ?? Self.importance(of: module).mapValues { $0.quantWeights() }
    let mixTypes = try types.mix.map { mix throws(BackendError) in
      let infos = names.map { hf, e in
        (
          hf, LlamaTensorNames.gguf(hf), e.shape,
          e.shape.count < 2 ? GGMLType.f32 : Self.floatType(e)
        )
      }
      return try GGUFMixPlan.types(
        infos, module: module, selection: types, mix: mix, hasImatrix: !importance.isEmpty,
        output: output)
    }
    for (hf, entry) in names {
      func fail(_ m: String) -> BackendError { BackendError(output: output, tensor: hf, m) }
      let gguf = LlamaTensorNames.gguf(hf)
      guard seen.insert(gguf).inserted else {
        throw fail("two tensors map to the GGUF name '\(gguf)'")
      }
      var type =
        mixTypes?[gguf] ?? types.type(hf: hf, gguf: gguf, entry: entry, sourceType: sourceTypes[hf])
      let shape = entry.shape
      var requantize = false
      // As llama.cpp does when a row does not fill whole blocks: the 32-block type of about the
      // same size, or F16 (what its converter does) when 32 does not divide the row either.
      if type.isQuantized { type = GGUFMixes.fallback(type, rowLength: shape.last ?? 1) }
      switch entry {
      case .dense(let d):
        guard d.dtype.isFloat, d.dtype != .f8e4m3 else {
          throw fail("dtype \(d.dtype) has no GGUF float type here")
        }
      case .quantized(let q):
        if let why = PrequantizedBlocks.obstacle(q, as: type) {
          guard types.mix != nil else { throw fail("cannot be written as \(type.name): \(why)") }
          requantize = true
        }
      }
      var weights = importance[hf]
      if let w = weights, !type.hasGGMLCodec || w.count != (shape.last ?? 0) {
        // llama-quantize skips the token embedding's row silently and refuses any other misfit.
        if w.count != (shape.last ?? 0) && gguf != "token_embd.weight" {
          throw fail("importance matrix row has \(w.count) columns, the weight \(shape.last ?? 0)")
        }
        weights = nil
      }
      var order: [Int]?
      if let r = LlamaTensorNames.rotary(gguf: gguf) {
        guard let heads else {
          throw fail("Q/K permutation needs num_attention_heads in the module attributes")
        }
        let n = r == .q ? heads.q : heads.kv
        guard let p = LlamaTensorNames.permutation(rows: shape[0], heads: n) else {
          throw fail("\(shape[0]) rows do not split into \(n) heads of even size")
        }
        order = p
      }
      tensors.append(
        PlannedTensor(
          hf: hf, gguf: gguf, type: type, shape: shape, rowOrder: order, entry: entry,
          requantize: requantize, importance: weights))
    }
    // The dominant type (by elements) among 2-D tensors names the file type.
    var byType: [GGMLType: Int] = [:]
    for t in tensors where t.shape.count >= 2 { byType[t.type, default: 0] += t.shape.reduce(1, *) }
    let dominant =
      byType.max { $0.value != $1.value ? $0.value < $1.value : $0.key.rawValue > $1.key.rawValue }?
      .key ?? .f32
    let anyQuantized = tensors.contains { $0.type.isQuantized }
    let fileType = types.mix?.fileType ?? dominant.fileType
    var metadata = LlamaMetadata.make(
      module, config: config, fileType: fileType, quantized: anyQuantized)
    let tokenizer = try TokenizerMetadata.make(module, config: config, output: output)
    metadata += tokenizer.values
    var keys = Set<String>()
    for k in metadata.map(\.0) + (tokenizer.raw?.keys ?? []) where !keys.insert(k).inserted {
      throw BackendError(output: output, "duplicate metadata key '\(k)'")
    }
    return ((metadata, tokenizer.raw), tensors)
  }

  /// Encodes a float tensor row by row (rows taken in `rowOrder`), split across threads, each
  /// thread handing finished chunks of rows to `sink` (byte offset in the tensor, bytes).
  package static func encodeDense(
    _ t: TensorData, as type: GGMLType, rowOrder: [Int]?, importance: [Float]? = nil, threads: Int,
    to sink: GGUFTensorEntry.Sink
  ) throws {
    let cols = t.shape.last ?? 1
    let rows = cols == 0 ? 0 : t.count / cols
    guard rows > 0 else { return }
    if t.isDeferred {
      // Decoded on demand (a GGUF import): each row goes from the source blocks straight into
      // the encoder, so no f32 copy of the tensor ever exists.
      try encodeRows(
        rows: rows, cols: cols, as: type, rowOrder: rowOrder, importance: importance,
        threads: threads, to: sink
      ) { range, b in
        if !t.decodeRows(range, into: b) {
          t.withF32 { all in
            b.update(from: all.baseAddress! + range.lowerBound * cols, count: range.count * cols)
          }  // safe: rows > 0
        }
        return UnsafePointer(b)
      }
      return
    }
    let dtype = t.dtype
    try t.withUnsafeBytes { src in
      nonisolated(unsafe) let s = src
      try encodeRows(
        rows: rows, cols: cols, as: type, rowOrder: rowOrder, importance: importance,
        threads: threads, to: sink, block: 1
      ) { range, b in
        let sr = range.lowerBound
        switch dtype {
        case .f32:
          if Int(bitPattern: s.baseAddress! + sr * cols * 4) % 4 == 0 {  // safe: non-empty
            return UnsafePointer(
              (s.baseAddress! + sr * cols * 4).assumingMemoryBound(to: Float.self))  // safe: as above
          }
          for c in 0..<cols {
            b[c] = Float(
              bitPattern: s.loadUnaligned(fromByteOffset: 4 * (sr * cols + c), as: UInt32.self))
          }
        case .f16:
          for c in 0..<cols {
            b[c] = f16ToFloat(s.loadUnaligned(fromByteOffset: 2 * (sr * cols + c), as: UInt16.self))
          }
        default:
          for c in 0..<cols {
            b[c] = bf16ToFloat(
              s.loadUnaligned(fromByteOffset: 2 * (sr * cols + c), as: UInt16.self))
          }
        }
        return UnsafePointer(b)
      }
    }
  }

  /// `encodeDense` into one array (tests compare it with a reference quantizer).
  package static func encodeDense(
    _ t: TensorData, as type: GGMLType, rowOrder: [Int]?, importance: [Float]? = nil, threads: Int
  ) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: type.byteCount(elements: t.count))
    out.withUnsafeMutableBytes { o in
      nonisolated(unsafe) let base = o.baseAddress
      try? encodeDense(t, as: type, rowOrder: rowOrder, importance: importance, threads: threads) {
        at, bytes in
        if bytes.count > 0 {
          (base! + at).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        }  // safe: non-empty
      }
    }
    return out
  }

  /// Splits the rows across threads; `row(sourceRows, scratch)` returns the f32 values of a
  /// range of consecutive source rows (in `scratch`, room for `block` rows, or in place), which
  /// are encoded as the output rows in order. With a `rowOrder` (Q/K permutation) the source
  /// rows are asked for one at a time. Each thread encodes up to `chunkBytes` of output at a
  /// time and hands it to `sink`.
  private static func encodeRows(
    rows: Int, cols: Int, as type: GGMLType, rowOrder: [Int]?, importance: [Float]?, threads: Int,
    to sink: GGUFTensorEntry.Sink,
    block: Int = 16,
    row: @Sendable (Range<Int>, UnsafeMutablePointer<Float>) -> UnsafePointer<Float>
  ) throws {
    let block = rowOrder == nil ? max(1, block) : 1
    let rowBytes = type.byteCount(elements: cols)
    let chunkRows = max(1, chunkBytes / max(rowBytes, 1))
    let workers = max(1, min(threads, rows / 64))
    let failure = Mutex<(any Error)?>(nil)
    DispatchQueue.concurrentPerform(iterations: workers) { w in
      var buf = [Float](repeating: 0, count: cols * block)
      var chunk = [UInt8](repeating: 0, count: min(chunkRows, rows) * rowBytes)
      buf.withUnsafeMutableBufferPointer { b in
        chunk.withUnsafeMutableBytes { c in
          var r = rows * w / workers
          let end = rows * (w + 1) / workers
          while r < end {
            let n = min(chunkRows, end - r)
            var k = 0
            while k < n {
              let m = min(block, n - k)
              let source = rowOrder.map { $0[r + k]..<($0[r + k] + 1) } ?? (r + k)..<(r + k + m)
              let values = row(source, b.baseAddress!)  // safe: cols > 0
              for j in 0..<m {
                let out = c.baseAddress! + (k + j) * rowBytes  // safe: non-empty
                if let importance {
                  importance.withUnsafeBufferPointer {
                    BlockQuantizers.encode(
                      values + j * cols, count: cols, as: type, into: out,
                      importance: $0.baseAddress)
                  }
                } else {
                  BlockQuantizers.encode(values + j * cols, count: cols, as: type, into: out)
                }
              }
              k += m
            }
            do {
              try sink(r * rowBytes, UnsafeRawBufferPointer(rebasing: c[0..<(n * rowBytes)]))
            } catch {
              failure.withLock { if $0 == nil { $0 = error } }
              return
            }
            if failure.withLock({ $0 != nil }) { return }
            r += n
          }
        }
      }
    }
    if let e = failure.withLock({ $0 }) { throw e }
  }

  /// Output bytes one thread encodes before writing them (fits in L2 with its source rows).
  static let chunkBytes = 256 << 10

  /// The float type a tensor is stored in before quantizing (what llama-quantize's rules keep
  /// for a tensor they leave alone).
  static func floatType(_ e: WeightStore.Entry) -> GGMLType {
    guard case .dense(let d) = e else { return .f32 }
    return d.dtype == .f16 ? .f16 : d.dtype == .bf16 ? .bf16 : .f32
  }
}
