import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// Where an out-of-tree plugin finds `qopt_plugin.h` (`qopt -print-plugin-include-dir`), so
/// its build names no path into qopt's sources:
///
///     cc -shared -fPIC -I"$(qopt -print-plugin-include-dir)" -o libmine.so mine.c
///
/// The directory is found relative to the running binary, first in the installed layout
/// (`scripts/install PREFIX` writes it), then in the source tree a build-tree binary was built
/// from:
///
///     PREFIX/bin/qopt                      PREFIX/include/qopt/qopt_plugin.h
///     REPO/.build/<triple>/release/qopt    REPO/Sources/CQoptPlugin/include/qopt_plugin.h
public enum PluginHeaders {
  public static let header = "qopt_plugin.h"

  /// The directories searched for the binary at `executable`, in order: the installed
  /// layout, then, for a binary in a SwiftPM build folder (`.build/<config>/qopt` or
  /// `.build/<triple>/<config>/qopt`), the checkout that folder belongs to.
  public static func candidates(forExecutable executable: String) -> [String] {
    let dir = parent(executable)
    var out = [parent(dir) + "/include/qopt"]
    for build in [parent(dir), parent(parent(dir))] where build.hasSuffix("/.build") {
      out.append(parent(build) + "/Sources/CQoptPlugin/include")
      break
    }
    return out
  }

  /// The first candidate that holds `qopt_plugin.h`, or an error naming where it looked.
  public static func directory(
    forExecutable executable: String
  ) throws(PluginHeadersError) -> String {
    let dirs = candidates(forExecutable: executable)
    guard let found = dirs.first(where: { access($0 + "/" + header, R_OK) == 0 }) else {
      throw PluginHeadersError(executable: executable, searched: dirs)
    }
    return found
  }

  /// The running binary's path, links resolved.
  public static func currentExecutable() -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    return n > 0
      ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
      : CommandLine.arguments[0]
  }

  private static func parent(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
  }
}

/// `qopt_plugin.h` is neither installed beside the binary nor in a source tree above it.
public struct PluginHeadersError: DiagnosticError, Sendable {
  public var executable: String
  public var searched: [String]
  public var diagnostics: [Diagnostic] {
    [
      Diagnostic(
        .error,
        "cannot find \(PluginHeaders.header) for \(executable); looked in \(searched.joined(separator: ", ")) (install with scripts/install PREFIX)"
      )
    ]
  }
}
