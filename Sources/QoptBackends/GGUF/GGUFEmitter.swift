import Dispatch
import QoptIR

/// Writes a llama-architecture GGUF v3 file that llama.cpp and the `gguf` package read:
/// `general.*` / `llama.*` / `tokenizer.*` metadata, tensors under GGUF names with Q and K rows
/// permuted into llama.cpp's adjacent-pair RoPE order, norms in F32, 2-D weights in the chosen
/// type (float weights quantized with llama.cpp's rounding, IR-quantized weights packed exactly
/// or refused). Layout: reference/gguf.md.
///
/// Memory: the encoded bytes of one tensor at a time; float sources are read in place
/// (memory-mapped when loaded from a sidecar).
public struct GGUFEmitter: WeightEmitter {
  public var formatName: String { "gguf" }
  public var types: GGUFTypeSelection
  public var threads: Int

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
  }

  public func check(_ module: Module, output: String) throws(BackendError) {
    _ = try plan(module, output: output)
  }

  public func emit(_ module: Module, to output: String) throws {
    let (metadata, tensors) = try plan(module, output: output)
    let threads = self.threads
    let entries = tensors.map { t in
      GGUFTensorEntry(name: t.gguf, shape: t.shape, type: t.type) {
        switch t.entry {
        case .dense(let d):
          defer { d.releasePages() }
          return Self.encodeDense(d, as: t.type, rowOrder: t.rowOrder, threads: threads)
        case .quantized(let q):
          defer { q.codes.releasePages() }
          return PrequantizedBlocks.encode(q, as: t.type, rowOrder: t.rowOrder, threads: threads)
        }
      }
    }
    try GGUFFileWriter.write(metadata: metadata, tensors: entries, to: output)
  }

  /// The tensors as they will be written: source name, GGUF name, type, row-major shape.
  package func layout(_ module: Module, output: String) throws(BackendError) -> [(hf: String, gguf: String, type: GGMLType, shape: [Int])] {
    try plan(module, output: output).1.map { ($0.hf, $0.gguf, $0.type, $0.shape) }
  }

  /// Validates every tensor and builds the metadata, before anything is written.
  func plan(_ module: Module, output: String) throws(BackendError) -> ([(String, GGUFValue)], [PlannedTensor]) {
    let weights = ModelWeights(module)
    let config = ModelConfig(module)
    let heads = LlamaMetadata.heads(config, module)
    if let rs = config.json["rope_scaling"], (rs["rope_type"] ?? rs["type"])?.stringValue == "llama3" {
      throw BackendError(output: output, "llama3 rope scaling must be baked into a rope_freqs tensor; not supported by this backend yet")
    }
    var tensors: [PlannedTensor] = []
    var seen = Set<String>()
    // Canonical order — Hugging Face names sorted as safetensors sorts them, which is the order
    // llama.cpp's converter writes — so the file does not depend on how the store was built.
    for hf in weights.tensors.sorted() {
      guard let entry = module.weights[hf] else { continue }
      func fail(_ m: String) -> BackendError { BackendError(output: output, tensor: hf, m) }
      let gguf = LlamaTensorNames.gguf(hf)
      guard seen.insert(gguf).inserted else { throw fail("two tensors map to the GGUF name '\(gguf)'") }
      var type = types.type(hf: hf, gguf: gguf, entry: entry)
      let shape = entry.shape
      switch entry {
      case .dense(let d):
        guard d.dtype.isFloat, d.dtype != .f8e4m3 else { throw fail("dtype \(d.dtype) has no GGUF float type here") }
        if type.isQuantized && (shape.last ?? 1) % type.blockSize != 0 {
          // As llama.cpp's converter does when a row does not fill whole blocks.
          type = .f16
        }
      case .quantized(let q):
        if let why = PrequantizedBlocks.obstacle(q, as: type) { throw fail("cannot be written as \(type.name): \(why)") }
      }
      var order: [Int]?
      if let r = LlamaTensorNames.rotary(gguf: gguf) {
        guard let heads else { throw fail("Q/K permutation needs num_attention_heads in the module attributes") }
        let n = r == .q ? heads.q : heads.kv
        guard let p = LlamaTensorNames.permutation(rows: shape[0], heads: n) else {
          throw fail("\(shape[0]) rows do not split into \(n) heads of even size")
        }
        order = p
      }
      tensors.append(PlannedTensor(hf: hf, gguf: gguf, type: type, shape: shape, rowOrder: order, entry: entry))
    }
    // The dominant type (by elements) among 2-D tensors names the file type.
    var byType: [GGMLType: Int] = [:]
    for t in tensors where t.shape.count >= 2 { byType[t.type, default: 0] += t.shape.reduce(1, *) }
    let dominant = byType.max { $0.value != $1.value ? $0.value < $1.value : $0.key.rawValue > $1.key.rawValue }?.key ?? .f32
    let anyQuantized = tensors.contains { $0.type.isQuantized }
    var metadata = LlamaMetadata.make(module, config: config, fileType: dominant.fileType, quantized: anyQuantized)
    metadata += try TokenizerMetadata.make(module, config: config, output: output)
    var keys = Set<String>()
    for (k, _) in metadata where !keys.insert(k).inserted {
      throw BackendError(output: output, "duplicate metadata key '\(k)'")
    }
    return (metadata, tensors)
  }

  /// Encodes a float tensor row by row (rows taken in `rowOrder`), split across threads.
  package static func encodeDense(_ t: TensorData, as type: GGMLType, rowOrder: [Int]?, threads: Int) -> [UInt8] {
    let cols = t.shape.last ?? 1
    let rows = cols == 0 ? 0 : t.count / cols
    var out = [UInt8](repeating: 0, count: type.byteCount(elements: t.count))
    guard rows > 0 else { return out }
    if t.isDeferred {
      // Decoded on demand (a GGUF import): each row goes from the source blocks straight into
      // the encoder, so no f32 copy of the tensor ever exists.
      encodeRows(rows: rows, cols: cols, as: type, rowOrder: rowOrder, threads: threads, into: &out) { sr, b in
        if !t.decodeRows(sr..<(sr + 1), into: b) {
          t.withF32 { all in b.update(from: all.baseAddress! + sr * cols, count: cols) }  // safe: rows > 0
        }
        return UnsafePointer(b)
      }
      return out
    }
    let dtype = t.dtype
    t.withUnsafeBytes { src in
      nonisolated(unsafe) let s = src
      encodeRows(rows: rows, cols: cols, as: type, rowOrder: rowOrder, threads: threads, into: &out) { sr, b in
        switch dtype {
        case .f32:
          if Int(bitPattern: s.baseAddress! + sr * cols * 4) % 4 == 0 {  // safe: non-empty
            return UnsafePointer((s.baseAddress! + sr * cols * 4).assumingMemoryBound(to: Float.self))  // safe: as above
          }
          for c in 0..<cols { b[c] = Float(bitPattern: s.loadUnaligned(fromByteOffset: 4 * (sr * cols + c), as: UInt32.self)) }
        case .f16:
          for c in 0..<cols { b[c] = f16ToFloat(s.loadUnaligned(fromByteOffset: 2 * (sr * cols + c), as: UInt16.self)) }
        default:
          for c in 0..<cols { b[c] = bf16ToFloat(s.loadUnaligned(fromByteOffset: 2 * (sr * cols + c), as: UInt16.self)) }
        }
        return UnsafePointer(b)
      }
    }
    return out
  }

  /// Splits the rows across threads; `row(sourceRow, scratch)` returns the f32 values of a
  /// source row (in `scratch`, `cols` floats, or in place), which are encoded as output row r.
  private static func encodeRows(
    rows: Int, cols: Int, as type: GGMLType, rowOrder: [Int]?, threads: Int, into out: inout [UInt8],
    row: @Sendable (Int, UnsafeMutablePointer<Float>) -> UnsafePointer<Float>
  ) {
    let rowBytes = type.byteCount(elements: cols)
    out.withUnsafeMutableBytes { dst in
      nonisolated(unsafe) let d = dst.baseAddress!  // safe: rows > 0
      let workers = max(1, min(threads, rows / 64))
      DispatchQueue.concurrentPerform(iterations: workers) { w in
        var buf = [Float](repeating: 0, count: cols)
        buf.withUnsafeMutableBufferPointer { b in
          for r in (rows * w / workers)..<(rows * (w + 1) / workers) {
            let values = row(rowOrder?[r] ?? r, b.baseAddress!)  // safe: cols > 0
            BlockQuantizers.encode(values, count: cols, as: type, into: d + r * rowBytes)
          }
        }
      }
    }
  }
}

