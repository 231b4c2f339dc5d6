import QoptIR

/// Reads a compressed-tensors `pack-quantized` directory (as `CompressedTensorsEmitter` and
/// llmcompressor write it) back into a weight store: each `X.weight_packed` group becomes a
/// quantized `X.weight` with the same codes, scales and zero points; other tensors stay
/// memory-mapped under their names; config.json becomes module attributes (plus `hf_config`,
/// the config without `quantization_config`); tokenizer and generation files become U8 blobs.
///
/// The HF importer (QoptFrontends `HFImporter.importCompressed`) builds the functions around
/// it; the reader stays beside the emitter because they share the packing code.
public enum CompressedTensorsReader {
  public struct Result {
    public var attributes: AttributeDict
    public var weights: WeightStore
    /// Input activation quantization (W8A8) of the linear reading each quantized weight, from
    /// its config group's `input_activations` and, when static, its `X.input_scale`.
    public var inputQuantization: [String: InputQuantization] = [:]
  }

  /// Files copied into the store as blobs when present.
  static let carriedFiles = [
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
    "vocab.json", "merges.txt", "chat_template.jinja", "tokenizer.model",
  ]

  public static func read(directory: String) throws -> Result {
    let configPath = directory + "/config.json"
    let configBytes = try readFile(configPath)
    let config: JSON
    do { config = try JSON.parse(configBytes) } catch {
      throw StorageError(file: configPath, offset: error.offset, message: "config.json is not valid JSON: \(error.message)")
    }
    guard config.objectPairs != nil else { throw StorageError(file: configPath, offset: 0, message: "config.json is not an object") }
    var attributes = AttributeDict()
    for (k, v) in config.objectPairs ?? [] where k != "quantization_config" {
      if let a = Attribute(json: v) { attributes[k] = a }
    }
    attributes["hf_config"] = .string(config.removing("quantization_config").pretty)
    let args = try weightArgs(config["quantization_config"], file: configPath)

    // Tensors, from every shard.
    var files: [String] = []
    let indexPath = directory + "/model.safetensors.index.json"
    if fileExists(indexPath) {
      let index: JSON
      do { index = try JSON.parse(readFile(indexPath)) } catch let e as JSONError {
        throw StorageError(file: indexPath, offset: e.offset, message: "index is not valid JSON: \(e.message)")
      }
      guard let map = index["weight_map"]?.objectPairs else {
        throw StorageError(file: indexPath, offset: 0, message: "index has no 'weight_map' object")
      }
      for (name, f) in map {
        // A shard outside the directory (`../x`, `/etc/x`) is never read.
        guard let f = f.stringValue, !f.isEmpty, !f.contains("/") else {
          throw StorageError(file: indexPath, offset: nil, message: "weight_map.\(name): must name a shard file in the same directory")
        }
        if !files.contains(f) { files.append(f) }
      }
      files.sort()
    } else {
      files = ["model.safetensors"]
    }
    var tensors: [(String, TensorData, String)] = []
    var byName: [String: (TensorData, String)] = [:]
    for f in files {
      let path = directory + "/" + f
      guard fileExists(path) else { throw StorageError(file: path, offset: nil, message: "shard does not exist") }
      let st = try SafetensorsFile(path: path)
      for (n, d) in st.tensors {
        if let other = byName[n] {
          throw StorageError(file: st.path, offset: nil, message: "tensor '\(n)' is also in '\(other.1)'")
        }
        byName[n] = (d, st.path)
        tensors.append((n, d, st.path))
      }
    }
    tensors.sort { $0.0 < $1.0 }

    let store = WeightStore()
    store.sourcePath = directory
    Progress.shared.expect(bytes: tensors.reduce(0) { $0 + $1.1.byteCount })
    for (name, data, path) in tensors {
      defer { Progress.shared.advance(bytes: data.byteCount) }
      if name.hasSuffix(".weight_packed") {
        let base = String(name.dropLast("_packed".count))
        if data.dtype == .u8 {
          store.set(base, .quantized(try nvfp4(base: base, packed: data, byName: byName, file: path)))
        } else {
          store.set(base, .quantized(try quantized(base: base, packed: data, byName: byName, args: args, file: path)))
        }
      } else if name.hasSuffix(".weight"), data.dtype == .f8e4m3, let scale = byName[name + "_scale"]?.0 {
        // float-quantized FP8: E4M3 codes under the weight's own name.
        store.set(name, .quantized(try fp8(name: name, codes: data, scale: scale, args: config["quantization_config"], file: path)))
      } else if name.hasSuffix(".weight"), data.dtype == .i8, let scale = byName[name + "_scale"]?.0 {
        // int-quantized (W8A8): int8 codes under the weight's own name.
        store.set(name, .quantized(try int8(name: name, codes: data, scale: scale, file: path)))
      } else if name.hasSuffix(".weight_scale") || name.hasSuffix(".weight_shape") || name.hasSuffix(".weight_zero_point")
        || name.hasSuffix(".weight_global_scale") || name.hasSuffix(".input_global_scale") || name.hasSuffix(".input_scale")
      {
        continue
      } else {
        store.set(name, .dense(data))
      }
    }
    for f in carriedFiles where fileExists(directory + "/" + f) {
      let b = try readFile(directory + "/" + f)
      store.set(f, .dense(TensorData(dtype: .u8, shape: [b.count], bytes: b)))
    }
    let inputs = try inputQuantization(config["quantization_config"], store: store, byName: byName, file: configPath)
    return Result(attributes: attributes, weights: store, inputQuantization: inputs)
  }

  /// An `int-quantized` weight: I8 codes as stored, one scale per row (`[out, 1]`) or tensor.
  private static func int8(name: String, codes: TensorData, scale: TensorData, file: String) throws(StorageError) -> QuantizedTensor {
    guard codes.shape.count == 2, scale.dtype.isFloat, scale.dtype != .f8e4m3 else {
      throw StorageError(file: file, offset: nil, message: "tensor '\(name)': int8 weight must be 2-D with float scales")
    }
    let rows = codes.shape[0]
    let g: Granularity
    if scale.shape == [rows, 1] || (scale.shape == [rows] && rows > 1) { g = .channel }
    else if scale.count == 1 { g = .tensor }
    else { throw StorageError(file: file, offset: nil, message: "tensor '\(name)_scale': shape \(scale.shape) fits no int8 scale layout for \(codes.shape) (per channel [\(rows), 1] or per tensor [1])") }
    let scheme = IntScheme(bits: 8, symmetric: true, granularity: g, scaleType: scale.dtype)
    return QuantizedTensor(scheme: .int(scheme), codes: codes, scale: g == .tensor ? scale.reshaped([1]) : scale.reshaped([rows, 1]))
  }

  /// Each quantized weight's input quantization: its module's config group (named in
  /// `targets`, by name or `re:` regex, else the `Linear` group whose weight type matches) and
  /// that group's `input_activations`; a static one takes its scale from `X.input_scale`.
  private static func inputQuantization(
    _ q: JSON?, store: WeightStore, byName: [String: (TensorData, String)], file: String
  ) throws(StorageError) -> [String: InputQuantization] {
    guard let q else { return [:] }
    struct Group { var targets: [String]; var patterns: [NamePattern]; var float: Bool; var input: InputQuantization? }
    var groups: [Group] = []
    for (g, v) in q["config_groups"]?.objectPairs ?? [] {
      func fail(_ m: String) -> StorageError {
        StorageError(file: file, offset: nil, message: "quantization_config.config_groups.\(g).input_activations: \(m)")
      }
      var input: InputQuantization?
      if let a = v["input_activations"], a != .null, a["num_bits"]?.intValue == 4, a["type"]?.stringValue == "float" {
        // NVFP4 inputs (W4A4): the global scale comes from each module's input_global_scale.
        guard a["strategy"]?.stringValue == "tensor_group", a["group_size"]?.intValue == 16, a["dynamic"]?.stringValue == "local" else {
          throw fail("4-bit float activations are supported as NVFP4 only (strategy tensor_group, group_size 16, dynamic \"local\")")
        }
        input = .nvfp4(globalScale: 1)
      } else if let a = v["input_activations"], a != .null {
        let type = a["type"]?.stringValue ?? "int", bits = a["num_bits"]?.intValue ?? 8
        guard bits == 8, type == "int" || type == "float" else { throw fail("\(bits)-bit \(type) activations are not supported (8-bit int or float)") }
        guard a["symmetric"]?.boolValue ?? true else { throw fail("asymmetric activations are not supported") }
        guard let dynamic = (a["dynamic"] ?? .bool(false)).boolValue else { throw fail("'dynamic' must be true or false") }
        guard let strategy = InputQuantization.Strategy(rawValue: a["strategy"]?.stringValue ?? "tensor") else {
          throw fail("strategy \(a["strategy"]?.stringValue ?? "?") is not supported (token or tensor)")
        }
        input = InputQuantization(kind: type == "float" ? .fp8 : .int8, mode: dynamic ? .dynamic : .static, strategy: strategy)
      }
      let targets = (v["targets"]?.arrayValue ?? []).compactMap(\.stringValue)
      var patterns: [NamePattern] = []
      for t in targets where t.hasPrefix("re:") {
        // Compiled once, and matched in linear time whatever the pattern (a config.json is
        // input like any other: `re:(a+)+b` must not stall the import).
        do { patterns.append(try NamePattern(String(t.dropFirst(3)))) } catch {
          throw StorageError(file: file, offset: nil, message: "quantization_config.config_groups.\(g).targets: \(error)")
        }
      }
      groups.append(Group(targets: targets, patterns: patterns, float: v["weights"]?["type"]?.stringValue == "float", input: input))
    }
    var out: [String: InputQuantization] = [:]
    for name in store.names {
      guard let w = store.quantized(name) else { continue }
      let module = moduleName(ofWeight: name)
      let isFloat = if case .int = w.scheme { false } else { true }
      let named = groups.first { g in g.targets.contains(module) || g.patterns.contains { $0.matchesPrefix(module) } }
      guard let group = named ?? groups.first(where: { $0.targets.contains("Linear") && $0.float == isFloat }), var input = group.input else { continue }
      if input.kind == .nvfp4 {
        guard let s = byName[module + ".input_global_scale"]?.0, s.count == 1, s.dtype == .f32, let v = s.floats().first, v.isFinite, v > 0 else {
          throw StorageError(file: file, offset: nil, message: "NVFP4 input activations of '\(module)' need a positive one-element F32 '\(module).input_global_scale'")
        }
        input.globalScale = v
      } else if input.mode == .static {
        guard let s = byName[module + ".input_scale"]?.0, s.count == 1, s.dtype.isFloat, let v = s.floats().first, v.isFinite, v > 0 else {
          throw StorageError(file: file, offset: nil, message: "static input activations of '\(module)' need a positive one-element '\(module).input_scale'")
        }
        input.scale = v
      }
      out[name] = input
    }
    return out
  }

  /// The weights QuantizationArgs of the config's groups (all groups must agree on bits and
  /// symmetry per tensor; the first group is used when targets are `Linear`).
  struct Args { var bits: Int; var symmetric: Bool; var granularity: Granularity }

  private static func weightArgs(_ q: JSON?, file: String) throws(StorageError) -> [Args] {
    guard let q else { return [] }
    guard q["quant_method"]?.stringValue == "compressed-tensors" else {
      throw StorageError(file: file, offset: nil, message: "quantization_config.quant_method is not 'compressed-tensors'")
    }
    var out: [Args] = []
    for (g, v) in q["config_groups"]?.objectPairs ?? [] {
      guard let w = v["weights"], w != .null else { continue }
      if w["type"]?.stringValue == "float" { continue }  // NVFP4 and FP8 are read from their tensors' dtypes
      guard w["type"]?.stringValue ?? "int" == "int", let bits = w["num_bits"]?.intValue else {
        throw StorageError(file: file, offset: nil, message: "quantization_config.config_groups.\(g): only int weights are supported")
      }
      let gs = w["group_size"]?.intValue
      let strategy = w["strategy"]?.stringValue
      let gran: Granularity =
        if strategy == "channel" || gs == -1 { .channel }
        else if strategy == "tensor" || gs == nil { .tensor }
        else if let n = gs, n > 0, n <= 1 << 30 { .group(n) }
        else { .channel }
      out.append(Args(bits: bits, symmetric: w["symmetric"]?.boolValue ?? true, granularity: gran))
    }
    return out
  }

  /// A `float-quantized` FP8 weight: codes as stored, granularity from the scale's shape.
  private static func fp8(name: String, codes: TensorData, scale: TensorData, args: JSON?, file: String) throws(StorageError) -> QuantizedTensor {
    guard codes.shape.count == 2 else { throw StorageError(file: file, offset: nil, message: "tensor '\(name)': FP8 weight must be 2-D") }
    let (rows, cols) = (codes.shape[0], codes.shape[1])
    let g: Granularity
    if scale.count == 1 {
      g = .tensor
    } else if scale.shape.count == 2, scale.shape[0] == rows, scale.shape[1] == 1 {
      g = .channel
    } else if scale.shape.count == 2, scale.shape[0] == rows, scale.shape[1] > 1, cols % scale.shape[1] == 0 {
      g = .group(cols / scale.shape[1])
    } else {
      throw StorageError(file: file, offset: nil, message: "tensor '\(name)_scale': shape \(scale.shape) fits no FP8 scale layout for [\(rows), \(cols)]")
    }
    return QuantizedTensor(scheme: .fp8(g), codes: codes, scale: scale)
  }

  /// An `nvfp4-pack-quantized` weight: nibbles back to one i8 E2M1 code per weight.
  private static func nvfp4(base: String, packed: TensorData, byName: [String: (TensorData, String)], file: String) throws(StorageError) -> QuantizedTensor {
    func fail(_ m: String) -> StorageError { StorageError(file: file, offset: nil, message: "tensor '\(base)_packed': \(m)") }
    guard packed.shape.count == 2, packed.shape[0] > 0, packed.shape[1] > 0 else { throw fail("expected U8 [rows, cols/2]") }
    let (rows, cols) = (packed.shape[0], packed.shape[1] * 2)
    guard let scale = byName[base + "_scale"]?.0, scale.dtype == .f8e4m3, scale.shape == [rows, cols / 16], cols % 16 == 0 else {
      throw fail("'\(base)_scale' must be F8_E4M3 [\(rows), \(cols / 16)]")
    }
    guard let gs = byName[base + "_global_scale"]?.0, gs.dtype == .f32, gs.count == 1 else {
      throw fail("'\(base)_global_scale' must be F32 [1]")
    }
    // Unpacked when a reader first needs them (one tensor at a time), not at import.
    let codes = TensorData(deferred: .i8, shape: [rows, cols]) { dst in
      packed.withUnsafeBytes { src in
        for k in 0..<(rows * cols / 2) {
          dst[2 * k] = src[k] & 0xF
          dst[2 * k + 1] = src[k] >> 4
        }
      }
      packed.releasePages()
    }
    return QuantizedTensor(scheme: .nvfp4(group: 16), codes: codes, scale: scale, globalScale: gs.reshaped([1]))
  }

  private static func quantized(
    base: String, packed: TensorData, byName: [String: (TensorData, String)], args: [Args], file: String
  ) throws(StorageError) -> QuantizedTensor {
    func fail(_ m: String) -> StorageError { StorageError(file: file, offset: nil, message: "tensor '\(base)_packed': \(m)") }
    guard let scale = byName[base + "_scale"]?.0 else { throw fail("missing '\(base)_scale'") }
    guard let shapeT = byName[base + "_shape"]?.0, shapeT.dtype == .i64 || shapeT.dtype == .i32, shapeT.count == 2 else {
      throw fail("missing or malformed '\(base)_shape'")
    }
    let dims: [Int] = shapeT.withUnsafeBytes { raw in
      (0..<2).map { i in
        shapeT.dtype == .i64 ? Int(raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
          : Int(raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))
      }
    }
    let (rows, cols) = (dims[0], dims[1])
    guard cols > 0, cols < 1 << 40 else { throw fail("'\(base)_shape' has \(cols) columns") }
    guard packed.dtype == .i32, packed.shape.count == 2, packed.shape[0] == rows, rows > 0 else {
      throw fail("expected I32 [\(rows), …], found \(packed.dtype.safetensorsName) \(packed.shape)")
    }
    let wpr = packed.shape[1]
    let bits = wpr * 32 / cols
    guard [2, 3, 4, 5, 6, 7, 8].contains(bits), PackToInt32.wordsPerRow(columns: cols, bits: bits) == wpr else {
      throw fail("\(wpr) words per row do not hold \(cols) codes of a supported bit width")
    }
    let zp = byName[base + "_zero_point"]?.0
    guard scale.shape.count == 2, scale.shape[0] == rows else { throw fail("scale shape \(scale.shape) does not match \(rows) rows") }
    let groups = scale.shape[1]
    guard groups >= 1 && groups <= cols else { throw fail("scale has \(groups) groups per row for \(cols) columns") }
    // Among the config's schemes of this width and symmetry (a model may mix group sizes, e.g.
    // 128 where it divides the row and 64 elsewhere), the one the scale's shape fits.
    let fitting = args.filter { $0.bits == bits && $0.symmetric == (zp == nil) }
    // A group that divides the row exactly first (on a 64-wide row, 64 rather than 128).
    func fits(_ a: Args) -> Bool { a.granularity.groupsPerRow(columns: cols) == groups }
    func divides(_ a: Args) -> Bool { if case .group(let n) = a.granularity { cols % n == 0 } else { true } }
    let a = fitting.first { fits($0) && divides($0) } ?? fitting.first(where: fits) ?? fitting.first
    let gran: Granularity = a?.granularity ?? (groups == 1 ? .channel : .group((cols + groups - 1) / groups))
    guard gran.groupsPerRow(columns: cols) == groups else { throw fail("\(groups) scale groups do not match the config's scheme") }
    let scheme = IntScheme(bits: bits, symmetric: zp == nil, granularity: gran, scaleType: scale.dtype)
    // Unpacked when a reader first needs them (one tensor at a time, `releasePages()` drops
    // them again), not at import: an 8B model's codes are 7 GB as i8.
    let codes = TensorData(deferred: .i8, shape: [rows, cols]) { dst in
      packed.withUnsafeBytes { src in
        // safe: rows · cols bytes
        let out = dst.bindMemory(to: Int8.self).baseAddress!
        PackToInt32.unpackRows(src, rows: rows, columns: cols, bits: bits, into: out)
      }
      packed.releasePages()
    }
    var zeroPoint: TensorData?
    if let zp {
      guard zp.dtype == .i32, zp.shape == [PackToInt32.wordsPerRow(columns: rows, bits: bits), groups] else {
        throw fail("zero point shape \(zp.shape) does not match")
      }
      // Packed along dim 0: unpack the transpose.
      let zt = zp.withUnsafeBytes { raw -> [Int8] in
        let wpr = zp.shape[0]
        var words = [UInt32](repeating: 0, count: wpr * groups)
        for w in 0..<wpr { for g in 0..<groups { words[g * wpr + w] = raw.loadUnaligned(fromByteOffset: 4 * (w * groups + g), as: UInt32.self) } }
        return words.withUnsafeBytes { PackToInt32.unpackRows($0, rows: groups, columns: rows, bits: bits) }
      }
      var z = [Int8](repeating: 0, count: rows * groups)
      for r in 0..<rows { for g in 0..<groups { z[r * groups + g] = zt[g * rows + r] } }
      zeroPoint = TensorData(int8: z, shape: [rows, groups])
    }
    return QuantizedTensor(scheme: .int(scheme), codes: codes, scale: scale, zeroPoint: zeroPoint)
  }
}

extension Attribute {
  /// A config.json value as an IR attribute (`nil` for null and objects, which have none).
  init?(json: JSON) {
    switch json {
    case .int(let v): self = .int(v)
    case .double(let v): self = .float(v)
    case .bool(let v): self = .bool(v)
    case .string(let v): self = .string(v)
    case .array(let xs):
      var out: [Attribute] = []
      for x in xs {
        guard let a = Attribute(json: x) else { return nil }
        out.append(a)
      }
      self = .array(out)
    case .null, .object: return nil
    }
  }
}
