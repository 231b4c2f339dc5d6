import Dispatch
import QoptFormats
import QoptIR
import Synchronization

/// Writes a GGUF v3 file that llama.cpp and the `gguf` package read, for the architectures
/// `GGUFArchitecture` names (llama, qwen3, qwen3moe, gemma3): `general.*` / `ARCH.*` /
/// `tokenizer.*` metadata, tensors under llama.cpp's names (MoE experts stacked, Llama's Q and
/// K rows permuted into its adjacent-pair RoPE order), norms in F32, 2-D weights in the chosen
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
    /// A stacked MoE tensor's further experts, written after `entry` in expert order, each with
    /// its own importance row.
    var rest: [(entry: WeightStore.Entry, importance: [Float]?)] = []
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
      GGUFTensorEntry(name: t.gguf, shape: t.shape, type: t.type) { threads, whole in
        // A stacked tensor's experts go one after another.
        var at = 0
        for (part, importance) in [(t.entry, t.importance)] + t.rest {
          let base = at
          try withoutActuallyEscaping(whole) { sink in
            try Self.encode(part, t, importance: importance, threads: threads) { o, bytes in
              try sink(base + o, bytes)
            }
          }
          at += t.type.byteCount(elements: part.shape.reduce(1, *))
        }
      }
    }
    try GGUFFileWriter.write(
      metadata: metadata.values, raw: metadata.raw, tensors: entries, threads: threads, to: output)
  }

  /// Encodes one stored tensor (or one expert of a stacked tensor) as `t.type` into `sink`.
  private static func encode(
    _ part: WeightStore.Entry, _ t: PlannedTensor, importance: [Float]?, threads: Int,
    to sink: GGUFTensorEntry.Sink
  ) throws {
    switch part {
    case .dense(let d):
      defer { d.releasePages() }
      try encodeDense(
        d, as: t.type, rowOrder: t.rowOrder, importance: importance, threads: threads, to: sink)
    case .quantized(let q) where t.requantize:
      defer { q.codes.releasePages() }
      let d = TensorData(floats: q.dequantized(), shape: q.shape)
      try encodeDense(
        d, as: t.type, rowOrder: t.rowOrder, importance: importance, threads: threads, to: sink)
    case .quantized(let q):
      defer { q.codes.releasePages() }
      try PrequantizedBlocks.encode(q, as: t.type, rowOrder: t.rowOrder, threads: threads)
        .withUnsafeBytes { try sink(0, $0) }
    }
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
    let arch = try GGUFArchitecture.of(config, output: output)
    var tensors: [PlannedTensor] = []
    if arch == .llama, let factors = LlamaRopeFreqs.factors(config) {
      // First, as the converter yields its extra tensors before the checkpoint's.
      let t = TensorData(floats: factors, shape: [factors.count])
      tensors.append(
        PlannedTensor(
          hf: "rope_freqs.weight", gguf: "rope_freqs.weight", type: .f32, shape: [factors.count],
          rowOrder: nil, entry: .dense(t)))
    }
    var seen = Set<String>()
    let sourceTypes = DenseDType.sourceTypes(module)
    // Canonical order — Hugging Face names sorted as safetensors sorts them, which is the order
    // llama.cpp's converter writes — so the file does not depend on how the store was built.
    // MoE experts of one layer and projection are collected until all are there and become one
    // stacked [experts, rows, cols] tensor (`Qwen2MoeModel.modify_tensors`).
    let expertCount = config.int("num_experts") ?? config.int("num_local_experts") ?? 0
    var experts: [String: [Int: (hf: String, entry: WeightStore.Entry)]] = [:]
    var groups: [(hf: String, gguf: String, parts: [(hf: String, entry: WeightStore.Entry)])] = []
    for hf in weights.tensors.sorted() {
      guard let entry = module.weights[hf] else { continue }
      func fail(_ m: String) -> BackendError { BackendError(output: output, tensor: hf, m) }
      if let x = arch.expert(hf) {
        guard x.expert < expertCount else { throw fail("expert \(x.expert) of \(expertCount)") }
        experts[x.gguf, default: [:]][x.expert] = (hf, entry)
        guard let group = experts[x.gguf], group.count == expertCount else { continue }
        let parts = (0..<expertCount).compactMap { group[$0] }
        guard parts.allSatisfy({ $0.entry.shape == parts[0].entry.shape }) else {
          throw fail("the experts of '\(x.gguf)' differ in shape")
        }
        groups.append((parts[0].hf, x.gguf, parts))
      } else if let g = arch.gguf(hf) {
        groups.append((hf, g, [(hf, entry)]))
      } else {
        throw fail("the \(arch.rawValue) architecture has no GGUF tensor for it")
      }
    }
    if let (g, group) = experts.first(where: { $0.value.count != expertCount }) {
      throw BackendError(output: output, tensor: g, "has \(group.count) of \(expertCount) experts")
    }
    func stackedShape(_ parts: [(hf: String, entry: WeightStore.Entry)]) -> [Int] {
      parts.count == 1 ? parts[0].entry.shape : [parts.count] + parts[0].entry.shape
    }
    let importance = self.importance ?? Self.importance(of: module).mapValues { $0.quantWeights() }
    let mixTypes = try types.mix.map { mix throws(BackendError) in
      let infos = groups.map { g in
        let shape = stackedShape(g.parts)
        return (
          g.hf, g.gguf, shape,
          shape.count < 2 ? GGMLType.f32 : Self.floatType(g.parts[0].entry)
        )
      }
      return try GGUFMixPlan.types(
        infos, module: module, selection: types, mix: mix, hasImatrix: !importance.isEmpty,
        output: output)
    }
    let assigned = AssignedScheme.all(in: module)
    for (hf, gguf, parts) in groups {
      func fail(_ m: String) -> BackendError { BackendError(output: output, tensor: hf, m) }
      guard seen.insert(gguf).inserted else {
        throw fail("two tensors map to the GGUF name '\(gguf)'")
      }
      var entry = parts[0].entry
      let shift = arch.normShift(hf)
      if shift != 0, case .dense(let d) = entry {
        // Gemma3 norms hold `1 + w` in the file, added in f32 as the converter does.
        entry = .dense(TensorData(floats: d.floats().map { $0 + shift }, shape: d.shape))
      }
      // An `assign-schemes` annotation acts as a `-gguf-type-override` would; an explicit
      // override on the command line still wins.
      let overridden = types.overrides.contains {
        GGUFTypeSelection.matches($0.pattern, hf) || GGUFTypeSelection.matches($0.pattern, gguf)
      }
      let annotated = try Self.assignedType(assigned[hf], output: output, tensor: hf)
      var type =
        (overridden ? nil : annotated) ?? mixTypes?[gguf]
        ?? types.type(hf: hf, gguf: gguf, entry: entry, sourceType: sourceTypes[hf])
      let shape = stackedShape(parts)
      var requantize = false
      // As llama.cpp does when a row does not fill whole blocks: the 32-block type of about the
      // same size, or F16 (what its converter does) when 32 does not divide the row either.
      if type.isQuantized { type = GGUFMixes.fallback(type, rowLength: shape.last ?? 1) }
      for part in parts {
        switch part.entry {
        case .dense(let d):
          guard d.dtype.isFloat, d.dtype != .f8e4m3 else {
            throw fail("dtype \(d.dtype) has no GGUF float type here")
          }
        case .quantized(let q):
          if let why = PrequantizedBlocks.obstacle(q, as: type) {
            guard types.mix != nil || annotated != nil else {
              throw fail("cannot be written as \(type.name): \(why)")
            }
            requantize = true
          }
        }
      }
      func rowWeights(_ name: String) throws(BackendError) -> [Float]? {
        guard let w = importance[name] else { return nil }
        if type.hasGGMLCodec && w.count == (shape.last ?? 0) { return w }
        // llama-quantize skips the token embedding's row silently and refuses any other misfit.
        if w.count != (shape.last ?? 0) && gguf != "token_embd.weight" {
          throw fail("importance matrix row has \(w.count) columns, the weight \(shape.last ?? 0)")
        }
        return nil
      }
      var order: [Int]?
      if arch.permutesQK, let r = LlamaTensorNames.rotary(gguf: gguf) {
        guard let heads else {
          throw fail("Q/K permutation needs num_attention_heads in the module attributes")
        }
        let n = r == .q ? heads.q : heads.kv
        guard let p = LlamaTensorNames.permutation(rows: shape[0], heads: n) else {
          throw fail("\(shape[0]) rows do not split into \(n) heads of even size")
        }
        order = p
      }
      var rest: [(entry: WeightStore.Entry, importance: [Float]?)] = []
      for part in parts.dropFirst() { rest.append((part.entry, try rowWeights(part.hf))) }
      tensors.append(
        PlannedTensor(
          hf: hf, gguf: gguf, type: type, shape: shape, rowOrder: order, entry: entry,
          requantize: requantize, importance: try rowWeights(hf), rest: rest))
    }
    // The dominant type (by elements) among 2-D tensors names the file type.
    var byType: [GGMLType: Int] = [:]
    for t in tensors where t.shape.count >= 2 { byType[t.type, default: 0] += t.shape.reduce(1, *) }
    let dominant =
      byType.max { $0.value != $1.value ? $0.value < $1.value : $0.key.rawValue > $1.key.rawValue }?
      .key ?? .f32
    let anyQuantized = tensors.contains { $0.type.isQuantized }
    let fileType = types.mix?.fileType ?? dominant.fileType
    var metadata =
      arch == .llama
      ? LlamaMetadata.make(module, config: config, fileType: fileType, quantized: anyQuantized)
      : try arch.metadata(
        module, config: config, fileType: fileType, quantized: anyQuantized, output: output)
    let tokenizer = try TokenizerMetadata.make(module, config: config, output: output)
    metadata += tokenizer.values
    var keys = Set<String>()
    for k in metadata.map(\.0) + (tokenizer.raw?.keys ?? []) where !keys.insert(k).inserted {
      throw BackendError(output: output, "duplicate metadata key '\(k)'")
    }
    return ((metadata, tokenizer.raw), tensors)
  }

  /// The ggml type an `assign-schemes` annotation names; an annotation of another family
  /// (`int4-g64`, …) is for the compressed-tensors backend and an error here.
  static func assignedType(
    _ s: AssignedScheme?, output: String, tensor: String
  ) throws(BackendError) -> GGMLType? {
    guard let s else { return nil }
    guard case .ggml(let n) = s, let t = GGMLType(name: n) else {
      throw BackendError(
        output: output, tensor: tensor,
        "is assigned \(s.spelling) (qopt.scheme), which is not a ggml type; assign-schemes<candidates=gguf> for GGUF output"
      )
    }
    return t
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
      // Uninitialized: rows are decoded into `b` and encoded into `c` before either is read
      // (zero-filling them cost a memset of the whole output, tensor by tensor).
      let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: cols * block)
      let c = UnsafeMutableRawBufferPointer.allocate(
        byteCount: min(chunkRows, rows) * rowBytes, alignment: 64)
      defer {
        b.deallocate()
        c.deallocate()
      }
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
