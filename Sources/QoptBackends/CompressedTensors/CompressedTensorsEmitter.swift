import QoptIR

/// Writes a Hugging Face model directory in the compressed-tensors `pack-quantized` format
/// that vLLM (`CompressedTensorsWNA16`) and transformers load:
///
///     out/config.json                  source config + quantization_config
///     out/model.safetensors            or model-0000i-of-0000n.safetensors + index
///     out/tokenizer.json, …            file blobs carried in the weight store
///
/// A quantized `X.weight` becomes `X.weight_packed` (I32, `pack_to_int32` along rows),
/// `X.weight_scale` (the scheme's scale dtype, negative scales kept), `X.weight_shape` (I64
/// [2]) and, when asymmetric, `X.weight_zero_point` (I32, packed along dim 0); every other
/// tensor keeps its name and dtype. Layout: reference/compressed-tensors.md §2, §4, §5.
public struct CompressedTensorsEmitter: WeightEmitter {
  public var formatName: String { "compressed-tensors" }
  /// Shards above this many bytes of tensor data (transformers' default 5 GB, decimal).
  public var maxShardSize: Int

  public init(maxShardSize: Int = 5_000_000_000) {
    self.maxShardSize = maxShardSize
  }

  public func check(_ module: Module, output: String) throws(BackendError) {
    _ = try plan(module, output: output)
  }

  public func emit(_ module: Module, to output: String) throws {
    let p = try plan(module, output: output)
    let dir = try AtomicDirectory(path: output)
    var config = ModelConfig(module).json
    if let q = p.quantizationConfig, let pairs = config.setting("quantization_config", q).objectPairs {
      config = .object(pairs.sorted { $0.0 < $1.0 })  // transformers writes config.json with sorted keys
    }
    try dir.write("config.json", Array((config.pretty + "\n").utf8))
    let shards = ShardPlan(p.entries, maxShardSize: maxShardSize)
    for (i, shard) in shards.shards.enumerated() {
      let name = shards.fileName(i)
      try SafetensorsWriter.write(shard, metadata: [("format", "pt")], to: dir.file(name))
    }
    if shards.shards.count > 1 {
      try dir.write("model.safetensors.index.json", Array((shards.index.pretty + "\n").utf8))
    }
    for name in p.files {
      // safe: files lists dense blobs only (ModelWeights).
      try dir.write(name, module.weights.dense(name)!.bytes)
    }
    try dir.commit()
  }

  // MARK: - Planning (everything checked before anything is written)

  struct Plan {
    var entries: [SafetensorsEntry] = []
    var quantizationConfig: JSON?
    var files: [String] = []
  }

  func plan(_ module: Module, output: String) throws(BackendError) -> Plan {
    let weights = ModelWeights(module)
    var plan = Plan()
    var groups: [(scheme: IntScheme, modules: [String])] = []
    var ignore: [String] = []
    for name in weights.files {
      guard !name.contains("/") else { throw BackendError(output: output, tensor: name, "file blob names must not contain '/'") }
      plan.files.append(name)
    }
    for name in weights.tensors {
      guard let entry = module.weights[name] else { continue }
      switch entry {
      case .dense(let t):
        plan.entries.append(Self.streamed(name, t))
        if weights.linear.contains(name) {
          ignore.append(weights.embedding.contains(name) ? "lm_head" : moduleName(ofWeight: name))
        }
      case .quantized(let q):
        let s = try packable(q, name: name, weights: weights, output: output)
        plan.entries += Self.entries(for: q, scheme: s, name: name)
        let mod = moduleName(ofWeight: name)
        let key = IntScheme(bits: s.bits, symmetric: s.symmetric, granularity: s.granularity, scaleType: .f32)
        if let i = groups.firstIndex(where: { $0.scheme == key }) { groups[i].modules.append(mod) } else { groups.append((key, [mod])) }
      }
    }
    // Hugging Face llama always has an `lm_head` Linear; with tied embeddings it is not in
    // the checkpoint and must still be excluded from the `Linear` target.
    if !groups.isEmpty && !ignore.contains("lm_head") && module.weights["lm_head.weight"] == nil {
      ignore.append("lm_head")
    }
    if !groups.isEmpty { plan.quantizationConfig = QuantizationConfig.make(groups: groups, ignore: ignore) }
    return plan
  }

  /// The scheme of `q` if vLLM's `CompressedTensorsWNA16` can load it, else the reason.
  private func packable(_ q: QuantizedTensor, name: String, weights: ModelWeights, output: String) throws(BackendError) -> IntScheme {
    func fail(_ m: String) -> BackendError { BackendError(output: output, tensor: name, m) }
    guard case .int(let s) = q.scheme else { throw fail("scheme \(q.scheme) is not supported by the compressed-tensors backend (int4/int8 pack-quantized only)") }
    guard name.hasSuffix(".weight"), q.shape.count == 2 else { throw fail("only 2-D '.weight' tensors of Linear modules can be pack-quantized") }
    guard weights.linear.contains(name), !weights.embedding.contains(name) else {
      throw fail("quantized weight is not the weight of a Linear module; vLLM loads pack-quantized Linears only")
    }
    guard s.bits == 4 || s.bits == 8 else { throw fail("\(s.bits)-bit codes cannot be loaded by vLLM's pack-quantized kernels (4 or 8 bits)") }
    let cols = q.shape[1]
    switch s.granularity {
    case .group(let g):
      guard cols % g == 0 else {
        throw fail("group size \(g) does not divide the row of \(cols) columns; vLLM needs groups that divide the input dimension")
      }
    case .channel: break
    case .tensor: throw fail("per-tensor int scales are not supported by vLLM's pack-quantized kernels (use a group size or per channel)")
    }
    guard cols % (32 / s.bits) == 0 else { throw fail("\(cols) columns do not fill whole int32 words of \(s.bits)-bit codes") }
    guard s.scaleType == .f32 || s.scaleType == .f16 || s.scaleType == .bf16 else {
      throw fail("scale dtype \(s.scaleType) is not a float type")
    }
    return s
  }

  /// A dense tensor written as it is; a memory-mapped source is copied out and its pages
  /// released, so writing a checkpoint larger than memory keeps one tensor resident at a time.
  static func streamed(_ name: String, _ t: TensorData) -> SafetensorsEntry {
    guard t.isMemoryMapped else { return SafetensorsEntry(name: name, data: t) }
    return SafetensorsEntry(name: name, dtype: t.dtype, shape: t.shape) {
      defer { t.releasePages() }
      return t.withUnsafeBytes { src in
        TensorData.build(dtype: t.dtype, shape: t.shape) { dst in dst.copyMemory(from: src) }
      }
    }
  }

  /// The tensors that replace a quantized `X.weight`, each packed only when written.
  static func entries(for q: QuantizedTensor, scheme s: IntScheme, name: String) -> [SafetensorsEntry] {
    let base = name  // X.weight → X.weight_packed, …
    let (rows, cols) = (q.shape[0], q.shape[1])
    let groups = s.granularity.groupsPerRow(columns: cols)
    var out = [
      SafetensorsEntry(name: base + "_packed", dtype: .i32, shape: [rows, PackToInt32.wordsPerRow(columns: cols, bits: s.bits)]) {
        defer { q.codes.releasePages() }
        return PackToInt32.packRows(q.codes, bits: s.bits)
      },
      SafetensorsEntry(name: base + "_scale", dtype: q.scale.dtype, shape: [rows, groups]) { q.scale.reshaped([rows, groups]) },
      SafetensorsEntry(name: base + "_shape", dtype: .i64, shape: [2]) {
        let v: [Int64] = [Int64(rows), Int64(cols)]
        return TensorData(dtype: .i64, shape: [2], bytes: v.withUnsafeBytes { Array($0) })
      },
    ]
    if let zp = q.zeroPoint {
      out.append(SafetensorsEntry(name: base + "_zero_point", dtype: .i32, shape: [PackToInt32.wordsPerRow(columns: rows, bits: s.bits), groups]) {
        PackToInt32.packColumns(zp.reshaped([rows, groups]), bits: s.bits)
      })
    }
    return out
  }
}
