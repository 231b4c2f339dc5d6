import QoptTestSupport
import Testing

/// One test case per `IR/**/*.ir` file: run its `// RUN:` lines, match its CHECK lines.
@Test(arguments: LitRunner.discover(under: TestPaths.repoRoot + "/IR"))
func irRegression(_ file: LitFile) {
  let runner = LitRunner(root: TestPaths.repoRoot, binDir: TestPaths.binDir)
  let result = runner.run(file)
  #expect(result.failures.isEmpty, "\(file.path):\n\(result.report)")
}

@Test func litSuiteIsNotEmpty() {
  #expect(LitRunner.discover(under: TestPaths.repoRoot + "/IR").count >= 10)
}
