/// The codes and scales of one quantized weight.
///
/// Dequantized value: `scale[row, group] * (code - zeroPoint[row, group])` (times
/// `1 / globalScale` for NVFP4). Codes are one signed byte per weight, unpacked: the IR's
/// sidecar favours inspection; backends pack.
public struct QuantizedTensor: Sendable {
  public var scheme: QuantScheme
  /// i8 codes with the weight's shape; for `.ggml`, the u8 block bytes `[rows, rowBytes]`.
  public var codes: TensorData
  /// Scales `[rows, groupsPerRow]` (`[1]` per tensor), in the scheme's scale dtype.
  public var scale: TensorData
  /// i8 zero points shaped like `scale`; absent for symmetric schemes.
  public var zeroPoint: TensorData?
  /// f32 `[1]` global scale (NVFP4).
  public var globalScale: TensorData?
  /// The float weights this was quantized from, while still at hand (never saved): passes
  /// that re-derive codes (`fuse-scales`) start from them instead of from dequantized values.
  public var source: TensorData?

  public init(
    scheme: QuantScheme, codes: TensorData, scale: TensorData, zeroPoint: TensorData? = nil,
    globalScale: TensorData? = nil, source: TensorData? = nil
  ) {
    self.source = source
    self.scheme = scheme
    self.codes = codes
    self.scale = scale
    self.zeroPoint = zeroPoint
    self.globalScale = globalScale
  }

  /// The weight's shape (for `.ggml`, columns counted from the blocks of a row).
  public var shape: [Int] {
    guard case .ggml(let k) = scheme, codes.shape.count == 2 else { return codes.shape }
    return [codes.shape[0], codes.shape[1] / k.blockBytes * k.blockSize]
  }

  /// A weight held as ggml blocks: `blocks` is `rows` rows of `kind.rowBytes(columns:)`
  /// bytes, exactly as ggml's encoder wrote them.
  public init(ggml kind: GGMLBlockKind, blocks: [UInt8], rows: Int, source: TensorData? = nil) {
    let rowBytes = rows == 0 ? 0 : blocks.count / rows
    self.init(
      scheme: .ggml(kind), codes: TensorData(dtype: .u8, shape: [rows, rowBytes], bytes: blocks),
      scale: TensorData(floats: [], shape: [0]), source: source)
  }

  /// The parts as they are saved in the sidecar, keyed `name#codes`, `name#scale`, ….
  public func parts(named name: String) -> [(String, TensorData)] {
    if case .ggml = scheme { return [("\(name)#blocks", codes)] }
    var p = [("\(name)#codes", codes), ("\(name)#scale", scale)]
    if let zeroPoint { p.append(("\(name)#zero_point", zeroPoint)) }
    if let globalScale { p.append(("\(name)#global_scale", globalScale)) }
    return p
  }
}

/// Named tensors that `param` ops refer to, in insertion order.
///
/// Entries loaded from a sidecar stay memory-mapped until a pass replaces them.
public final class WeightStore {
  public enum Entry: Sendable {
    case dense(TensorData)
    case quantized(QuantizedTensor)

    public var shape: [Int] {
      switch self {
      case .dense(let t): t.shape
      case .quantized(let q): q.shape
      }
    }
  }

  public private(set) var names: [String] = []
  private var entries: [String: Entry] = [:]
  /// The sidecar the entries were read from, if any (for diagnostics).
  public var sourcePath: String?

  public init() {}

  public subscript(name: String) -> Entry? { entries[name] }

  public var count: Int { names.count }

  public func contains(_ name: String) -> Bool { entries[name] != nil }

  /// Where quantized entries go as they are set, for models too large to hold them (nil: they
  /// stay in memory).
  public var spill: WeightSpill?

  /// Adds or replaces an entry (a replaced entry keeps its position). A replaced dense tensor's
  /// mapped pages (or decoded copy) are released: the store no longer reads it, and a model
  /// quantized tensor by tensor would otherwise keep every page it read resident.
  public func set(_ name: String, _ entry: Entry) {
    var entry = entry
    if let spill, case .quantized(let q) = entry { entry = .quantized(spill.spill(q)) }
    let old = entries.updateValue(entry, forKey: name)
    if old == nil { names.append(name) }
    if case .dense(let t)? = old { t.releasePages() }
  }

  public func remove(_ name: String) {
    if entries.removeValue(forKey: name) != nil { names.removeAll { $0 == name } }
  }

  /// The dense tensor `name`, if it is one.
  public func dense(_ name: String) -> TensorData? {
    if case .dense(let t)? = entries[name] { return t }
    return nil
  }

  /// The quantized tensor `name`, if it is one.
  public func quantized(_ name: String) -> QuantizedTensor? {
    if case .quantized(let q)? = entries[name] { return q }
    return nil
  }

  /// Reads a sidecar: plain names are dense tensors; `name#codes` with `name#scale` (and
  /// optional `#zero_point`, `#global_scale`) form a quantized tensor whose scheme comes from
  /// the IR type that refers to it (`schemes`), or a placeholder until the verifier sees it.
  public static func load(
    sidecar path: String, schemes: [String: QuantScheme]
  ) throws(StorageError) -> WeightStore {
    try load(sidecar: SafetensorsFile(path: path), schemes: schemes)
  }

  /// The weights of an opened sidecar.
  public static func load(
    sidecar file: SafetensorsFile, schemes: [String: QuantScheme]
  ) throws(StorageError) -> WeightStore {
    let path = file.path
    let store = WeightStore()
    store.sourcePath = path
    var parts: [String: [String: TensorData]] = [:]
    var order: [String] = []
    for (name, data) in file.tensors {
      if let hash = name.lastIndex(of: "#") {
        let base = String(name[..<hash])
        let part = String(name[name.index(after: hash)...])
        // Importance sums (`W#in_sum2`) belong to `Module.importance`, read by `ModuleIO`.
        if part == "in_sum2" { continue }
        guard ["codes", "scale", "zero_point", "global_scale", "blocks"].contains(part) else {
          throw StorageError(
            file: path, offset: nil, message: "tensor '\(name)': unknown quantized part '#\(part)'")
        }
        if parts[base] == nil { order.append(base) }
        parts[base, default: [:]][part] = data
      } else {
        order.append(name)
        store.set(name, .dense(data))
      }
    }
    for base in order where parts[base] != nil {
      // safe: order only lists bases present in parts or dense names, checked above.
      let p = parts[base]!
      if let blocks = p["blocks"] {
        guard case .ggml(let kind)? = schemes[base] else {
          throw StorageError(
            file: path, offset: nil,
            message:
              "tensor '\(base)#blocks' holds ggml blocks but the IR gives '\(base)' no !q.ggml<…> type"
          )
        }
        guard blocks.dtype == .u8, blocks.shape.count == 2, blocks.shape[1] % kind.blockBytes == 0,
          p.count == 1
        else {
          throw StorageError(
            file: path, offset: nil,
            message:
              "tensor '\(base)#blocks' must be U8 [rows, whole \(kind.name) blocks] with no other parts, found \(blocks.dtype.safetensorsName) \(blocks.shape)"
          )
        }
        store.set(
          base,
          .quantized(
            QuantizedTensor(
              scheme: .ggml(kind), codes: blocks, scale: TensorData(floats: [], shape: [0]))))
        continue
      }
      guard let codes = p["codes"], let scale = p["scale"] else {
        throw StorageError(
          file: path, offset: nil,
          message: "quantized tensor '\(base)' needs both '#codes' and '#scale'")
      }
      guard codes.dtype == .i8 || codes.dtype == .f8e4m3 else {
        throw StorageError(
          file: path, offset: nil,
          message:
            "tensor '\(base)#codes' must be I8 or F8_E4M3, found \(codes.dtype.safetensorsName)")
      }
      let scheme =
        schemes[base]
        ?? .int(
          IntScheme(
            bits: 8, symmetric: p["zero_point"] == nil, granularity: .tensor, scaleType: scale.dtype
          ))
      store.set(
        base,
        .quantized(
          QuantizedTensor(
            scheme: scheme, codes: codes, scale: scale, zeroPoint: p["zero_point"],
            globalScale: p["global_scale"])))
    }
    return store
  }

  /// Every tensor as sidecar entries (quantized ones split into their parts).
  public func sidecarEntries(excluding skip: Set<String> = []) -> [SafetensorsEntry] {
    var out: [SafetensorsEntry] = []
    for name in names where !skip.contains(name) {
      switch entries[name] {
      case .dense(let t)?: out.append(SafetensorsEntry(name: name, data: t))
      case .quantized(let q)?:
        out += q.parts(named: name).map { SafetensorsEntry(name: $0.0, data: $0.1) }
      case nil: break
      }
    }
    return out
  }
}
