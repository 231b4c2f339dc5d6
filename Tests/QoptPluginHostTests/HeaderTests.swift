import Foundation
import Testing

/// `qopt_plugin.h` stands alone: plain C99 with pedantic warnings as errors, and C++ (with
/// the clang++ every Swift toolchain ships).
@Suite struct HeaderTests {
  @Test(arguments: [
    ["cc", "-std=c99", "-pedantic-errors", "-Wall", "-Wextra", "-Werror", "-x", "c"],
    ["clang++", "-std=c++11", "-pedantic-errors", "-Wall", "-Wextra", "-Werror", "-x", "c++"],
  ])
  func compilesAlone(_ compiler: [String]) throws {
    let dir = try Fixtures.tempDir()
    try "#include \"qopt_plugin.h\"\nint main(void) { return (int)sizeof(qopt_host_api) > 0 ? 0 : 1; }\n"
      .write(toFile: dir + "/main.c", atomically: true, encoding: .utf8)
    let (status, output) = try Fixtures.run(
      "/usr/bin/env", compiler + ["-fsyntax-only", "-I", Fixtures.headerDir, "main.c"], in: dir)
    #expect(status == 0, "\(compiler[0]) rejected the header:\n\(output)")
  }
}
