import QoptIR

/// A fact computed from a module on demand and cached by the `AnalysisManager` until a pass
/// that does not preserve it changes the module.
public protocol Analysis {
  associatedtype Result
  /// The name passes list in `preserves` and `-debug-pass-manager` prints.
  static var name: String { get }
  static func compute(_ module: Module, _ analyses: AnalysisManager) throws -> Result
}

/// Caches analysis results for one module.
public final class AnalysisManager {
  private var cache: [String: Any] = [:]
  let log: (String) -> Void

  package init(log: @escaping (String) -> Void) { self.log = log }

  /// The cached result of `A`, computing it first if needed.
  public func get<A: Analysis>(_ a: A.Type, for module: Module) throws -> A.Result {
    if let r = cache[A.name] as? A.Result {
      log("cached analysis: \(A.name)")
      return r
    }
    log("running analysis: \(A.name)")
    let r = try A.compute(module, self)
    cache[A.name] = r
    return r
  }

  /// Stores a result computed elsewhere (for example by a pass that produces it as a by-product).
  public func set<A: Analysis>(_ a: A.Type, _ result: A.Result) {
    cache[A.name] = result
  }

  public func isCached(_ name: String) -> Bool { cache[name] != nil }

  /// Drops every cached result not named in `preserved`.
  func invalidate(except preserved: [String]) {
    if preserved.contains("*") { return }
    for key in cache.keys.sorted() where !preserved.contains(key) {
      log("invalidating analysis: \(key)")
      cache[key] = nil
    }
  }
}
