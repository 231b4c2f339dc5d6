/// Reading and writing `.ir` files with their `.safetensors` sidecar.
///
/// `x.ir` keeps its large weights in `x.safetensors` beside it; small ones may be inline.
/// Saving writes both through temporary names and renames them into place (sidecar first), so
/// a failure never leaves a partial output and never touches the input.
///
/// Two renames are not one atomic step: a kill between them leaves the new sidecar beside the
/// old `.ir`. So a saved pair is tied together: the `.ir` starts with `// sidecar-id: H` and
/// the sidecar's metadata holds `sidecar_id = H`, where H is a hash of the printed IR text.
/// Loading refuses a pair whose ids differ. Equal ids mean equal IR text, so the mixed pair a
/// kill can leave is either refused or byte-identical to the complete new output. A
/// hand-written `.ir` without the line loads any sidecar, as before.
public enum ModuleIO {
  /// The first line of a saved `.ir` that has a sidecar.
  static let sidecarIDPrefix = "// sidecar-id: "
  /// The sidecar metadata key holding the same id.
  public static let sidecarIDKey = "sidecar_id"

  /// The sidecar path for an `.ir` path: the extension replaced by `.safetensors`.
  public static func sidecarPath(for irPath: String) -> String {
    let base = irPath.hasSuffix(".ir") ? String(irPath.dropLast(3)) : irPath
    return base + ".safetensors"
  }

  /// Parses `text` (read from `file`) and resolves its weights from the sidecar when any
  /// `param` is not inline. `file == "<stdin>"` resolves nothing.
  public static func load(text: String, file: String) throws -> Module {
    let module = try Parser.parse(text, file: file)
    guard module.hasWeightSource else { return module }
    let inline = Set(module.weights.names)
    var schemes: [String: QuantScheme] = [:]
    var firstExternal: Op?
    for op in module.allOps {
      guard let name = op.paramName, !inline.contains(name), op.result?.type.isStatic == true else { continue }
      if firstExternal == nil { firstExternal = op }
      if let s = op.result?.type.element.scheme { schemes[name] = s }
    }
    let pendingImportance = module.importance.filter { !$0.value.isResolved }.keys.sorted()
    guard firstExternal != nil || !pendingImportance.isEmpty else { return module }
    let sidecar = sidecarPath(for: file)
    guard fileExists(sidecar) else {
      let what =
        firstExternal.map { "weight \(Printer.symbol($0.paramName ?? ""))" }
        ?? "importance \(Printer.symbol(pendingImportance[0]))"
      let at = firstExternal?.location ?? SourceLocation(file: file, line: 1, column: 1)
      let message = "\(what) is not inline and the sidecar '\(sidecar)' does not exist"
      throw VerifyError([Diagnostic(.error, message, at: at)])
    }
    let sidecarFile = try SafetensorsFile(path: sidecar)
    if let want = sidecarID(in: text) {
      let have = sidecarFile.metadata.first { $0.0 == sidecarIDKey }?.1
      guard have == want else {
        throw VerifyError([Diagnostic(
          .error,
          "the sidecar '\(sidecar)' does not belong to this file (its sidecar_id is \(have.map { "'\($0)'" } ?? "missing"), this file expects '\(want)'): the pair comes from different runs, e.g. an interrupted write; rerun the command that wrote it",
          at: SourceLocation(file: file, line: 1, column: 1))])
      }
    }
    try resolveImportance(of: module, from: sidecarFile)
    let store = try WeightStore.load(sidecar: sidecarFile, schemes: schemes)
    for name in inline {
      if let e = module.weights[name] { store.set(name, e) }
    }
    module.weights = store
    return module
  }

  /// Reads and parses an `.ir` file.
  public static func load(path: String) throws -> Module {
    let bytes = try readFile(path)
    guard let text = String(validating: bytes, as: UTF8.self) else {
      throw StorageError(file: path, offset: firstInvalidUTF8(bytes), message: "file is not valid UTF-8")
    }
    return try load(text: text, file: path)
  }

  /// Writes `module` to `path` (text) and its sidecar (every weight not printed inline).
  public static func save(_ module: Module, to path: String, printer: Printer = Printer()) throws {
    let inline = printer.inlinedWeights(of: module)
    // Weights referenced by a `param` or by a module attribute (`tokenizer = @"tokenizer.json"`).
    let referenced = Set(module.allOps.compactMap(\.paramName))
      .union(module.attributes.compactMap { $0.value.symbolValue })
    let inlineImportance = printer.inlinedImportance(of: module)
    let unreferenced = Set(module.weights.names).subtracting(referenced)
    let sums = module.importance.keys.sorted().compactMap { name -> SafetensorsEntry? in
      let s = module.importance[name]!  // safe: iterating its keys
      guard s.isResolved, !inlineImportance.contains(name) else { return nil }
      let data = TensorData(floats: s.sumSquares, shape: [s.experts, s.columns])
      return SafetensorsEntry(name: name + importanceSuffix, data: data)
    }
    let entries = module.weights.sidecarEntries(excluding: inline.union(unreferenced)) + sums
    var text = printer.print(module)
    let id = hexHash(text)
    if !entries.isEmpty { text = sidecarIDPrefix + id + "\n" + text }
    let ir = try AtomicFileWriter(path: path)
    try ir.write(text)
    if !entries.isEmpty {
      let sidecar = sidecarPath(for: path)
      let out = try AtomicFileWriter(path: sidecar)
      do {
        try SafetensorsWriter.write(entries, metadata: [("format", "pt"), ("producer", "qopt"), (sidecarIDKey, id)], into: out)
        try out.commit()
      } catch {
        out.abandon()
        ir.abandon()
        throw error
      }
    }
    try ir.commit()
  }

  /// The sidecar suffix of an importance statistic's sums (`W#in_sum2`, f32 `[experts, columns]`).
  public static let importanceSuffix = "#in_sum2"

  /// Fills the sums of the importance declarations that had no inline data from the sidecar.
  static func resolveImportance(of module: Module, from file: SafetensorsFile) throws {
    for (name, s) in module.importance where !s.isResolved {
      let tensor = "tensor '\(name)\(importanceSuffix)'"
      guard let t = file.tensor(named: name + importanceSuffix) else {
        let message = "\(tensor) of importance \(Printer.symbol(name)) is missing"
        throw StorageError(file: file.path, offset: nil, message: message)
      }
      guard t.dtype == .f32, t.shape == [s.experts, s.columns] else {
        let message =
          "\(tensor) is \(t.dtype.rawValue) \(t.shape), but importance \(Printer.symbol(name))"
          + " declares f32 [\(s.experts), \(s.columns)]"
        throw StorageError(file: file.path, offset: nil, message: message)
      }
      module.importance[name]?.sumSquares = t.floats()
    }
  }

  /// The sidecar id a saved `.ir` text records on its first line, if any.
  static func sidecarID(in text: String) -> String? {
    guard text.hasPrefix(sidecarIDPrefix) else { return nil }
    return String(text.dropFirst(sidecarIDPrefix.count).prefix { !$0.isWhitespace })
  }

  /// FNV-1a (64-bit) of the UTF-8 text, as 16 hex digits: cheap, deterministic, and only asked
  /// to tell two outputs of qopt apart, not to resist an adversary.
  static func hexHash(_ text: String) -> String {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in text.utf8 {
      h ^= UInt64(b)
      h = h &* 0x100_0000_01b3
    }
    let hex = String(h, radix: 16)
    return String(repeating: "0", count: 16 - hex.count) + hex
  }

  /// The byte offset of the first byte that breaks UTF-8 validity.
  static func firstInvalidUTF8(_ bytes: [UInt8]) -> Int {
    var i = 0
    while i < bytes.count {
      let b = bytes[i]
      let n = b < 0x80 ? 1 : b >> 5 == 0b110 ? 2 : b >> 4 == 0b1110 ? 3 : b >> 3 == 0b11110 ? 4 : 0
      guard n > 0, i + n <= bytes.count, String(validating: bytes[i..<(i + n)], as: UTF8.self) != nil else { return i }
      i += n
    }
    return i
  }
}
