import QoptFormats
import QoptIR

/// Writes a Hugging Face model directory in the compressed-tensors formats vLLM and
/// transformers load (`pack-quantized`, `nvfp4-pack-quantized`, `float-quantized`,
/// `int-quantized`):
///
///     out/config.json                  source config + quantization_config
///     out/model.safetensors            or model-0000i-of-0000n.safetensors + index
///     out/tokenizer.json, …            file blobs carried in the weight store
///
/// A quantized `X.weight` becomes `X.weight_packed` (I32, `pack_to_int32` along rows),
/// `X.weight_scale` (the scheme's scale dtype, negative scales kept), `X.weight_shape` (I64
/// [2]) and, when asymmetric, `X.weight_zero_point` (I32, packed along dim 0); every other
/// tensor keeps its name and dtype. FP8 weights keep their name (F8_E4M3 codes + `weight_scale`);
/// int8 weights of a linear with int8 inputs (W8A8) likewise as I8 codes; a static input
/// scale becomes `X.input_scale`. Layout: reference/compressed-tensors.md §2, §4, §5.
public struct CompressedTensorsEmitter: WeightEmitter {
  public var formatName: String { dequantize ? "safetensors" : "compressed-tensors" }
  /// Shards above this many bytes of tensor data (transformers' default 5 GB, decimal).
  public var maxShardSize: Int
  /// The dtype of unquantized tensors (`source`: the checkpoint's own precision).
  public var denseDType: DenseDType
  /// Replace an existing directory even when it holds files qopt did not write.
  public var force: Bool
  /// The command line recorded in the output's `qopt-manifest.json`.
  public var command: [String]
  /// Write a plain float checkpoint: quantized weights dequantized, no quantization_config
  /// (`-emit=safetensors`, see `SafetensorsEmitter`).
  var dequantize = false

  public init(
    maxShardSize: Int = 5_000_000_000, denseDType: DenseDType = .source, force: Bool = false,
    command: [String] = []
  ) {
    self.maxShardSize = maxShardSize
    self.denseDType = denseDType
    self.force = force
    self.command = command
  }

  public func check(_ module: Module, output: String) throws(BackendError) {
    _ = try plan(module, output: output)
  }

  public func emit(_ module: Module, to output: String) throws {
    // vLLM merges q/k/v and gate/up into one GEMM: their NVFP4 global scales must agree.
    if !dequantize, let problem = module.nvfp4FusionProblems().first {
      throw BackendError(
        output: output, problem.message + " (vLLM would rescale the other shards wrongly)")
    }
    let p = try plan(module, output: output)
    let dir = try AtomicDirectory(path: output, force: force)
    var config = ModelConfig(module).json
    if let d = p.modelDType.flatMap(DenseDType.torchName) {
      config = config.setting("torch_dtype", .string(d))
    }
    if let q = p.quantizationConfig { config = config.setting("quantization_config", q) }
    if let pairs = config.objectPairs {
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
    try dir.commit(format: formatName, command: command)
  }

  // MARK: - Planning (everything checked before anything is written)

  struct Plan {
    var entries: [SafetensorsEntry] = []
    var quantizationConfig: JSON?
    var files: [String] = []
    /// The dtype the embedding table is written in: config.json's `torch_dtype`.
    var modelDType: DType?
  }

  func plan(_ module: Module, output: String) throws(BackendError) -> Plan {
    let weights = ModelWeights(module)
    var plan = Plan()
    var groups: [(scheme: QuantizationConfig.GroupScheme, modules: [String])] = []
    var ignore: [String] = []
    let sourceTypes = DenseDType.sourceTypes(module)
    let fallback = DenseDType.fallback(ModelConfig(module).json)
    // The GGUF importer's tokenizer records serve GGUF output; a directory gets tokenizer.json.
    for name in weights.files where name != GGUFTokenizerRecords.blobName {
      guard !name.contains("/") else {
        throw BackendError(output: output, tensor: name, "file blob names must not contain '/'")
      }
      plan.files.append(name)
    }
    for name in weights.tensors {
      guard let entry = module.weights[name] else { continue }
      switch entry {
      case .dense(let t):
        if !dequantize && weights.inputQuantization[name] != nil {
          throw BackendError(
            output: output, tensor: name,
            "the linear reading it quantizes its input but the weight is not quantized; compressed-tensors W8A8 needs 8-bit weights (run rtn first)"
          )
        }
        let dtype =
          t.dtype.isFloat && t.dtype != .f8e4m3
          ? denseDType.resolve(sourceType: sourceTypes[name], current: t.dtype, fallback: fallback)
          : t.dtype
        plan.entries.append(
          dtype == t.dtype ? Self.streamed(name, t) : Self.converted(name, t, to: dtype))
        if weights.embedding.contains(name) && plan.modelDType == nil { plan.modelDType = dtype }
        if weights.linear.contains(name) {
          ignore.append(weights.embedding.contains(name) ? "lm_head" : moduleName(ofWeight: name))
        }
      case .quantized(let q) where dequantize:
        let dtype = denseDType.resolve(
          sourceType: sourceTypes[name], current: .f32, fallback: fallback)
        plan.entries.append(
          SafetensorsEntry(name: name, dtype: dtype, shape: q.shape) {
            TensorData(floats: q.dequantized(), shape: q.shape, as: dtype)
          })
        if weights.embedding.contains(name) && plan.modelDType == nil { plan.modelDType = dtype }
      case .quantized(let q):
        let key: QuantizationConfig.GroupScheme
        let input = weights.inputQuantization[name]
        if let input {
          plan.entries += try Self.inputEntries(input, weight: q.scheme, name: name, output: output)
        }
        let inputKey = input.map {
          InputQuantization(kind: $0.kind, mode: $0.mode, strategy: $0.strategy)
        }
        if case .ggml(let k) = q.scheme {
          throw BackendError(
            output: output, tensor: name,
            "\(k.name) is a ggml block format with no compressed-tensors form (emit it with -emit=gguf, or dequantize it)"
          )
        } else if case .fp8(let g) = q.scheme {
          try checkFP8(q, name: name, weights: weights, output: output)
          plan.entries += Self.fp8Entries(for: q, name: name)
          key = .fp8(g, inputKey)
        } else if case .nvfp4 = q.scheme {
          try checkNVFP4(q, name: name, weights: weights, output: output)
          plan.entries += Self.nvfp4Entries(for: q, name: name)
          key = input == nil ? .nvfp4 : .nvfp4a4
        } else if let inputKey {
          let g = try checkInt8(q, name: name, weights: weights, output: output)
          plan.entries += Self.int8Entries(for: q, name: name)
          key = .int8(g, inputKey)
        } else {
          let s = try packable(q, name: name, weights: weights, output: output)
          plan.entries += Self.entries(for: q, scheme: s, name: name)
          key = .int(
            IntScheme(
              bits: s.bits, symmetric: s.symmetric, granularity: s.granularity, scaleType: .f32))
        }
        let mod = moduleName(ofWeight: name)
        if let i = groups.firstIndex(where: { $0.scheme == key }) {
          groups[i].modules.append(mod)
        } else {
          groups.append((key, [mod]))
        }
      }
    }
    // Hugging Face llama always has an `lm_head` Linear; with tied embeddings it is not in
    // the checkpoint and must still be excluded from the `Linear` target.
    if !groups.isEmpty && !ignore.contains("lm_head") && module.weights["lm_head.weight"] == nil {
      ignore.append("lm_head")
    }
    if !groups.isEmpty {
      plan.quantizationConfig = QuantizationConfig.make(groups: groups, ignore: ignore)
    }
    return plan
  }

  /// The scheme of `q` if vLLM's `CompressedTensorsWNA16` can load it, else the reason.
  private func packable(
    _ q: QuantizedTensor, name: String, weights: ModelWeights, output: String
  ) throws(BackendError) -> IntScheme {
    func fail(_ m: String) -> BackendError { BackendError(output: output, tensor: name, m) }
    guard case .int(let s) = q.scheme else {
      throw fail(
        "scheme \(q.scheme) is not supported by the compressed-tensors backend (int4/int8 pack-quantized, NVFP4, FP8)"
      )
    }
    guard name.hasSuffix(".weight"), q.shape.count == 2 else {
      throw fail("only 2-D '.weight' tensors of Linear modules can be pack-quantized")
    }
    guard weights.linear.contains(name), !weights.embedding.contains(name) else {
      throw fail(
        "quantized weight is not the weight of a Linear module; vLLM loads pack-quantized Linears only"
      )
    }
    guard s.bits == 4 || s.bits == 8 else {
      throw fail(
        "\(s.bits)-bit codes cannot be loaded by vLLM's pack-quantized kernels (4 or 8 bits)")
    }
    let cols = q.shape[1]
    switch s.granularity {
    case .group(let g):
      guard cols % g == 0 else {
        throw fail(
          "group size \(g) does not divide the row of \(cols) columns; vLLM needs groups that divide the input dimension"
        )
      }
    case .channel: break
    case .tensor:
      throw fail(
        "per-tensor int scales are not supported by vLLM's pack-quantized kernels (use a group size or per channel)"
      )
    }
    guard cols % (32 / s.bits) == 0 else {
      throw fail("\(cols) columns do not fill whole int32 words of \(s.bits)-bit codes")
    }
    guard s.scaleType == .f32 || s.scaleType == .f16 || s.scaleType == .bf16 else {
      throw fail("scale dtype \(s.scaleType) is not a float type")
    }
    return s
  }

  /// A dense tensor written as it is. A memory-mapped source is written straight from the
  /// mapping, whose pages the writer releases chunk by chunk (`SafetensorsFile.writeParallel`),
  /// so writing a checkpoint larger than memory keeps a few chunks resident at a time.
  static func streamed(_ name: String, _ t: TensorData) -> SafetensorsEntry {
    SafetensorsEntry(name: name, data: t)
  }

  /// A float tensor rounded to `dtype` (the source's precision) as it is written. An f32 view
  /// of an f16/bf16 checkpoint tensor going back to its own dtype is the source's bytes (the
  /// round trip is exact), written from the mapping without converting.
  static func converted(_ name: String, _ t: TensorData, to dtype: DType) -> SafetensorsEntry {
    if let source = t.conversionSource, source.dtype == dtype {
      return SafetensorsEntry(name: name, data: source)
    }
    return StreamedEntries.converted(name, t, to: dtype)
  }

  /// Checks an FP8 weight against `float-quantized`: E4M3 codes, f32 scales per tensor, row
  /// or group (a group must divide the row).
  private func checkFP8(
    _ q: QuantizedTensor, name: String, weights: ModelWeights, output: String
  ) throws(BackendError) {
    func fail(_ m: String) -> BackendError { BackendError(output: output, tensor: name, m) }
    guard case .fp8(let g) = q.scheme, name.hasSuffix(".weight"), q.shape.count == 2 else {
      throw fail("FP8 weights must be 2-D '.weight' tensors")
    }
    guard weights.linear.contains(name), !weights.embedding.contains(name) else {
      throw fail(
        "quantized weight is not the weight of a Linear module; vLLM loads quantized Linears only")
    }
    if case .group(let n) = g, q.shape[1] % n != 0 {
      throw fail(
        "group size \(n) does not divide the row of \(q.shape[1]) columns; vLLM needs groups that divide the input dimension"
      )
    }
    guard q.codes.dtype == .f8e4m3, q.scale.dtype.isFloat, q.scale.dtype != .f8e4m3 else {
      throw fail("FP8 codes must be F8_E4M3 with float scales")
    }
  }

  /// `X.weight` (F8_E4M3 codes) and `X.weight_scale` (`[1]` per tensor, `[out, groups]`
  /// otherwise), as FP8_DYNAMIC's weights (data/formats/fp8-dynamic.md).
  static func fp8Entries(for q: QuantizedTensor, name: String) -> [SafetensorsEntry] {
    guard case .fp8(let g) = q.scheme else { return [] }
    let (rows, cols) = (q.shape[0], q.shape[1])
    let scaleShape = g == .tensor ? [1] : [rows, g.groupsPerRow(columns: cols)]
    return [
      streamed(name, q.codes),
      SafetensorsEntry(name: name + "_scale", dtype: q.scale.dtype, shape: scaleShape) {
        q.scale.reshaped(scaleShape)
      },
    ]
  }

  /// The activation side of a W8A8 linear: its input type must match the weight's (fp8 with
  /// fp8, int8 with int8), and a static scale is written as `X.input_scale` (F32 [1]).
  static func inputEntries(
    _ q: InputQuantization, weight: QuantScheme, name: String, output: String
  ) throws(BackendError) -> [SafetensorsEntry] {
    switch (q.kind, weight) {
    case (.fp8, .fp8), (.int8, .int(_)): break
    case (.nvfp4, .nvfp4):
      // W4A4: the calibrated activation global scale (reference/compressed-tensors.md §5).
      guard let gs = q.globalScale else { return [] }
      return [
        SafetensorsEntry(
          name: moduleName(ofWeight: name) + ".input_global_scale",
          data: TensorData(floats: [gs], shape: [1]))
      ]
    default:
      throw BackendError(
        output: output, tensor: name,
        "\(q.kind.rawValue) input activations with \(Printer.scheme(weight)) weights fit no compressed-tensors format (float-quantized: fp8 with fp8; int-quantized: int8 with int8; nvfp4-pack-quantized: nvfp4 with nvfp4)"
      )
    }
    guard q.mode == .static, let scale = q.scale else { return [] }
    return [
      SafetensorsEntry(
        name: moduleName(ofWeight: name) + ".input_scale",
        data: TensorData(floats: [scale], shape: [1]))
    ]
  }

  /// Checks an int weight against `int-quantized` (W8A8): symmetric 8-bit codes, one scale per
  /// row or per tensor, float scales.
  private func checkInt8(
    _ q: QuantizedTensor, name: String, weights: ModelWeights, output: String
  ) throws(BackendError) -> Granularity {
    func fail(_ m: String) -> BackendError { BackendError(output: output, tensor: name, m) }
    guard case .int(let s) = q.scheme, s.bits == 8, s.symmetric else {
      throw fail(
        "int-quantized (W8A8) needs symmetric 8-bit weights, found \(Printer.scheme(q.scheme))")
    }
    guard name.hasSuffix(".weight"), q.shape.count == 2, weights.linear.contains(name),
      !weights.embedding.contains(name)
    else {
      throw fail(
        "quantized weight is not the weight of a Linear module; vLLM loads quantized Linears only")
    }
    guard s.granularity == .channel || s.granularity == .tensor else {
      throw fail(
        "int-quantized (W8A8) needs one weight scale per channel or per tensor, found \(Printer.scheme(q.scheme))"
      )
    }
    guard s.scaleType.isFloat, s.scaleType != .f8e4m3 else {
      throw fail("scale dtype \(s.scaleType) is not a float type")
    }
    return s.granularity
  }

  /// `X.weight` (I8 codes, not packed) and `X.weight_scale` (`[out, 1]`, `[1]` per tensor), as
  /// the W8A8 listing (data/formats/w8a8-int8.md).
  static func int8Entries(for q: QuantizedTensor, name: String) -> [SafetensorsEntry] {
    let perTensor = if case .int(let s) = q.scheme { s.granularity == .tensor } else { false }
    let scaleShape = perTensor ? [1] : [q.shape[0], 1]
    return [
      streamed(name, q.codes),
      SafetensorsEntry(name: name + "_scale", dtype: q.scale.dtype, shape: scaleShape) {
        q.scale.reshaped(scaleShape)
      },
    ]
  }

  /// Checks an NVFP4 weight against `nvfp4-pack-quantized` (group 16, E4M3 scales, a global
  /// scale, an even row length that is a multiple of 16).
  private func checkNVFP4(
    _ q: QuantizedTensor, name: String, weights: ModelWeights, output: String
  ) throws(BackendError) {
    func fail(_ m: String) -> BackendError { BackendError(output: output, tensor: name, m) }
    guard case .nvfp4(let g) = q.scheme, g == 16 else {
      throw fail("NVFP4 needs groups of 16 for nvfp4-pack-quantized")
    }
    guard name.hasSuffix(".weight"), q.shape.count == 2, q.shape[1] % 16 == 0 else {
      throw fail("NVFP4 weights must be 2-D '.weight' tensors whose rows are a multiple of 16")
    }
    guard weights.linear.contains(name), !weights.embedding.contains(name) else {
      throw fail(
        "quantized weight is not the weight of a Linear module; vLLM loads pack-quantized Linears only"
      )
    }
    guard q.codes.dtype == .i8 || q.codes.dtype == .u8, q.scale.dtype == .f8e4m3,
      q.scale.count == q.shape[0] * q.shape[1] / 16
    else {
      throw fail("NVFP4 codes must be i8 E2M1 nibbles with one F8_E4M3 scale per 16 weights")
    }
    guard let gs = q.globalScale, gs.count == 1 else {
      throw fail("NVFP4 weight has no global scale")
    }
  }

  /// `X.weight_packed` (U8, element 2k in the low nibble of byte k), `X.weight_scale` (F8_E4M3),
  /// `X.weight_global_scale` (F32 [1]); reference/compressed-tensors.md §6.
  package static func nvfp4Entries(for q: QuantizedTensor, name: String) -> [SafetensorsEntry] {
    let (rows, cols) = (q.shape[0], q.shape[1])
    return [
      StreamedEntries.packedNibbles(name + "_packed", codes: q.codes),
      SafetensorsEntry(name: name + "_scale", dtype: .f8e4m3, shape: [rows, cols / 16]) {
        q.scale.reshaped([rows, cols / 16])
      },
      SafetensorsEntry(name: name + "_global_scale", dtype: .f32, shape: [1]) {
        // safe: checkNVFP4 required it.
        let g = q.globalScale!
        return g.dtype == .f32 ? g.reshaped([1]) : TensorData(floats: g.floats(), shape: [1])
      },
    ]
  }

  /// The tensors that replace a quantized `X.weight`, each packed only when written.
  static func entries(
    for q: QuantizedTensor, scheme s: IntScheme, name: String
  ) -> [SafetensorsEntry] {
    let base = name  // X.weight → X.weight_packed, …
    let (rows, cols) = (q.shape[0], q.shape[1])
    let groups = s.granularity.groupsPerRow(columns: cols)
    var out = [
      StreamedEntries.packedInt32(base + "_packed", codes: q.codes, bits: s.bits),
      SafetensorsEntry(name: base + "_scale", dtype: q.scale.dtype, shape: [rows, groups]) {
        q.scale.reshaped([rows, groups])
      },
      SafetensorsEntry(name: base + "_shape", dtype: .i64, shape: [2]) {
        let v: [Int64] = [Int64(rows), Int64(cols)]
        return TensorData(dtype: .i64, shape: [2], bytes: v.withUnsafeBytes { Array($0) })
      },
    ]
    if let zp = q.zeroPoint {
      out.append(
        SafetensorsEntry(
          name: base + "_zero_point", dtype: .i32,
          shape: [PackToInt32.wordsPerRow(columns: rows, bits: s.bits), groups]
        ) {
          PackToInt32.packColumns(zp.reshaped([rows, groups]), bits: s.bits)
        })
    }
    return out
  }
}
