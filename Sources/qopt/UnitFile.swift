import QoptIR
import QoptPasses

/// A finished unit in the work folder: `unit-K.ir` with its `.safetensors` sidecar, an IR
/// module holding only the unit's block functions (as the pipeline left them), their weights
/// and importance statistics, the run's module attributes and the unit's fingerprint
/// (`qopt.unit`). `ModuleIO.save` writes the pair through temporary names, tied by a sidecar
/// id, so a killed unit leaves either no file, the previous one, or the complete new one.
enum UnitFile {
  /// The module attribute holding the unit's fingerprint.
  static let fingerprintKey = "qopt.unit"

  /// Moves blocks `range` of `module` (after the pipeline ran) into a unit module and saves it.
  static func save(
    _ module: Module, blocks range: ClosedRange<Int>, fingerprint: String, to path: String
  ) throws {
    let blocks = try blockFunctions(of: module)
    let unit = Module(name: module.name, attributes: module.attributes)
    unit.attributes[fingerprintKey] = .string(fingerprint)
    let store = WeightStore()
    for bi in range {
      let f = blocks[bi]
      module.remove(f)
      unit.append(f)
      for op in f.body {
        guard let n = op.paramName, let e = module.weights[n] else { continue }
        store.set(n, e)
        if let s = module.importance[n] { unit.importance[n] = s }
      }
    }
    unit.weights = store
    try ModuleIO.save(unit, to: path)
  }

  /// The fingerprint a saved unit records, or nil when there is no readable unit file (read
  /// from the text alone; the sidecar is not opened).
  static func fingerprint(at path: String) -> String? {
    guard fileExists(path), let bytes = try? readFile(path),
      let text = String(validating: bytes, as: UTF8.self),
      let m = try? Parser.parse(text, file: path)
    else { return nil }
    return m.attributes[fingerprintKey]?.stringValue
  }

  /// Puts a saved unit's blocks into `module` in place of its own (same names, same order),
  /// with their weights and importance statistics; returns the unit's module attributes
  /// (without the fingerprint).
  static func graft(_ path: String, into module: Module) throws -> AttributeDict {
    let unit = try ModuleIO.load(path: path)
    var attributes = unit.attributes
    attributes[fingerprintKey] = nil
    var replacement: [String: Function] = [:]
    for f in unit.functions {
      guard module.function(named: f.name) != nil else {
        throw WorkError("\(path): @\(f.name) is not a function of the input model")
      }
      replacement[f.name] = f
      for op in f.body {
        guard let n = op.paramName, let e = unit.weights[n] else { continue }
        module.weights.set(n, e)
        module.importance[n] = unit.importance[n]
      }
    }
    // Functions keep their order: every one is removed and appended again.
    let all = module.functions
    for f in all { module.remove(f) }
    for f in all {
      if let r = replacement[f.name] {
        unit.remove(r)
        module.append(r)
      } else {
        module.append(f)
      }
    }
    return attributes
  }

  private static func blockFunctions(of module: Module) throws -> [Function] {
    guard let main = module.function(named: "main") else {
      throw WorkError("the module has no @main")
    }
    return main.body.filter { $0.kind == .call }.compactMap {
      $0.callee.flatMap(module.function(named:))
    }
  }
}
