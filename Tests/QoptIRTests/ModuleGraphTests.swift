import Foundation
import QoptTestSupport
import Testing

/// The package's shape (docs/architecture.md): each file format has one home (QoptFormats),
/// support sits below the IR, and frontends and backends never reach each other. These read
/// the sources and Package.swift, so a move that breaks the shape fails here with the names.
@Suite struct ModuleGraphTests {
  /// Top-level `public`/`open`/`package` type names, each with the files that declare it.
  static func publicTypeDeclarations() throws -> [String: [String]] {
    let root = TestPaths.repoRoot + "/Sources"
    let decl = try Regex(
      #"^(?:@\w+(?:\([^)]*\))?\s+)*(?:public|open|package)\s+(?:final\s+|indirect\s+)*(?:struct|enum|class|protocol|actor|typealias)\s+(\w+)"#
    )
    var found: [String: [String]] = [:]
    let files =
      FileManager.default.enumerator(atPath: root)?.compactMap { $0 as? String }.filter {
        $0.hasSuffix(".swift")
      } ?? []
    #expect(!files.isEmpty, "no Swift files under \(root)")
    for file in files.sorted() {
      let text = try String(contentsOfFile: root + "/" + file, encoding: .utf8)
      for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
        guard let m = try decl.firstMatch(in: String(line)), let name = m.output[1].substring else {
          continue
        }
        found[String(name), default: []].append(file)
      }
    }
    return found
  }

  @Test func everyPublicTypeIsDefinedOnce() throws {
    let found = try Self.publicTypeDeclarations()
    #expect(
      found["GGUFValue"]?.count == 1,
      "the scan must see the GGUF value type (found: \(found["GGUFValue"] ?? []))")
    let twice = found.filter { $0.value.count > 1 }.sorted { $0.key < $1.key }
    #expect(
      twice.isEmpty,
      "public types defined more than once: \(twice.map { "\($0.key) in \($0.value.joined(separator: ", "))" }.joined(separator: "; "))"
    )
  }

  /// Each target's direct dependencies on other targets of the package, read from Package.swift.
  static func targetDependencies() throws -> [String: Set<String>] {
    let text = try String(contentsOfFile: TestPaths.repoRoot + "/Package.swift", encoding: .utf8)
    let target = try Regex(
      #"\.(?:target|executableTarget|testTarget)\(\s*name:\s*"([^"]+)"(?:\s*,\s*dependencies:\s*\[([^\]]*)\])?"#
    )
    let quoted = try Regex(#""([^"]+)""#)
    var deps: [String: Set<String>] = [:]
    for m in text.matches(of: target) {
      guard let name = m.output[1].substring else { continue }
      let list = m.output[2].substring.map(String.init) ?? ""
      // `.product(name: "X", package: "p")` names another package's product: not a target edge.
      let withoutProducts = list.replacing(try Regex(#"\.product\([^)]*\)"#), with: "")
      deps[String(name)] = Set(
        withoutProducts.matches(of: quoted).compactMap { $0.output[1].substring.map(String.init) })
    }
    return deps
  }

  static func reachable(from start: String, _ deps: [String: Set<String>]) -> Set<String> {
    var seen: Set<String> = []
    var stack = Array(deps[start] ?? [])
    while let d = stack.popLast() {
      if seen.insert(d).inserted { stack += deps[d] ?? [] }
    }
    return seen
  }

  @Test func layersDependOnlyDownward() throws {
    let deps = try Self.targetDependencies()
    for t in [
      "QoptSupport", "QoptIR", "QoptFormats", "QoptFrontends", "QoptBackends", "QoptPasses",
      "QoptRuntime",
    ] {
      #expect(deps[t] != nil, "Package.swift declares no target \(t)")
    }
    let forbidden: [(from: String, to: [String])] = [
      (
        "QoptSupport",
        ["QoptIR", "QoptFormats", "QoptFrontends", "QoptBackends", "QoptPasses", "QoptRuntime"]
      ),
      ("QoptIR", ["QoptFormats", "QoptFrontends", "QoptBackends", "QoptPasses", "QoptRuntime"]),
      ("QoptFormats", ["QoptFrontends", "QoptBackends", "QoptPasses", "QoptRuntime"]),
      ("QoptFrontends", ["QoptBackends", "QoptPasses", "QoptRuntime"]),
      ("QoptBackends", ["QoptFrontends", "QoptPasses", "QoptRuntime"]),
      ("QoptPasses", ["QoptFrontends", "QoptBackends"]),
    ]
    for (from, to) in forbidden {
      let r = Self.reachable(from: from, deps)
      for t in to {
        #expect(
          !r.contains(t),
          "\(from) depends on \(t) (directly or through \(deps[from]?.sorted() ?? [])); see docs/architecture.md"
        )
      }
    }
    #expect(
      Self.reachable(from: "QoptFrontends", deps).contains("QoptFormats"),
      "the dependency reader lost the frontends' edges")
  }
}
