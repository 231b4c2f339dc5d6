import QoptIR
import QoptPasses
import QoptTestSupport
import Testing

/// docs/passes.md is generated from the registry; this fails when it is stale.
@Test func passReferenceIsUpToDate() throws {
  let committed = String(decoding: try readFile(TestPaths.repoRoot + "/docs/passes.md"), as: UTF8.self)
  #expect(committed == PassDocs.markdown(.builtin()), "docs/passes.md is out of date: run `.build/release/qopt -print-pass-docs > docs/passes.md`")
}
