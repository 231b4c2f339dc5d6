import QoptIR
import QoptTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Every file under `Tests/Malformed/` (written by `generate.py` there) is fed to the release
/// `qopt` the way a user would: it must exit 1 — never crash on a signal — with a message
/// containing each line of the case's `.expect` (the file name and a byte offset, line or
/// key). The whole run, big cases built here included, must peak under 200 MB RSS.
@Suite(.serialized) struct MalformedCorpusTests {
  static let root = TestPaths.repoRoot + "/Tests/Malformed"
  static let qopt = TestPaths.binDir + "/qopt"

  /// One malformed input: how to feed it and what the error must say.
  struct Case: CustomStringConvertible, Sendable {
    var format: String
    var path: String
    var expect: [String]
    var description: String { format + "/" + (path.split(separator: "/").last.map(String.init) ?? path) }
  }

  static var cases: [Case] {
    var out: [Case] = []
    for format in ["ir", "pipeline", "safetensors", "gguf", "config", "tokenizer", "compressed-tensors"] {
      let dir = root + "/" + format
      for name in directoryEntries(dir).sorted() where name.hasSuffix(".expect") {
        let input = dir + "/" + String(name.dropLast(".expect".count))
        let expect = readTextFile(dir + "/" + name).split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        out.append(Case(format: format, path: input, expect: expect))
      }
    }
    return out
  }

  @Test func corpusHasAtLeastFiftyCasesAcrossEveryFormat() {
    let cs = Self.cases
    #expect(cs.count >= 50)
    #expect(Set(cs.map(\.format)).count == 7)
  }

  /// The command line that feeds a case to qopt, with its checkpoint directory (if the format
  /// needs one) assembled under `tmp`.
  static func argv(_ c: Case, tmp: String) -> [String] {
    mkdir(tmp, 0o755)
    switch c.format {
    case "pipeline":
      return [qopt, "-passes=" + readTextFile(c.path), TestPaths.repoRoot + "/IR/examples/tiny-llama.ir"]
    case "safetensors":
      symlink(root + "/safetensors/_config.json", tmp + "/config.json")
      symlink(c.path, tmp + "/model.safetensors")
      return [qopt, tmp]
    case "config":
      symlink(root + "/config/_model.safetensors", tmp + "/model.safetensors")
      symlink(c.path, tmp + "/config.json")
      return [qopt, tmp]
    case "tokenizer":
      symlink(root + "/tokenizer/_model.safetensors", tmp + "/model.safetensors")
      symlink(root + "/tokenizer/_config.json", tmp + "/config.json")
      symlink(c.path, tmp + "/tokenizer.json")
      writeText(tmp + "/text.txt", "hello world\n")
      return [qopt, "eval", tmp, "-data", tmp + "/text.txt", "-threads", "1"]
    default:  // ir, gguf, compressed-tensors
      return [qopt, c.path]
    }
  }

  @Test func everyMalformedInputIsALocatedErrorWithinTheMemoryBound() throws {
    let tmp = TestTemporary.makeDirectory("malformed")
    defer { removeTree(tmp) }
    let cs = Self.cases + (try Self.generatedCases(in: tmp + "/big"))
    let argvs = cs.enumerated().map { i, c in Self.argv(c, tmp: tmp + "/\(i)") }
    writeText(tmp + "/cases.json", JSON.array(argvs.map { .array($0.map { .string($0) }) }).serialized)
    // The runner starts every qopt itself: see run_cases.py for why not from this process.
    let r = try ChildProcess.run(["/usr/bin/env", "python3", Self.root + "/run_cases.py", tmp + "/cases.json", tmp + "/results.json"])
    try #require(r.termination == .exited(0), "run_cases.py: \(r.stderr)")
    let results = try JSON.parse(readTextFile(tmp + "/results.json"))
    let list = try #require(results["results"]?.arrayValue)
    try #require(list.count == cs.count)
    var failures: [String] = []
    for (c, res) in zip(cs, list) {
      let code = res["returncode"]?.intValue ?? -999
      let stderr = res["stderr"]?.stringValue ?? ""
      if code != 1 {
        failures.append("\(c): \(code < 0 ? "signal \(-code)" : "exit \(code)"), expected exit 1; stderr:\n\(stderr)")
      } else if let e = c.expect.first(where: { !stderr.contains($0) }) {
        failures.append("\(c): the message lacks '\(e)':\n\(stderr)")
      }
    }
    let report = failures.joined(separator: "\n\n")
    #expect(failures.isEmpty, "\(failures.count) of \(cs.count) cases:\n\(report)")
    let peakKB = results["children_max_rss_kb"]?.intValue ?? 0
    #expect(peakKB > 0 && peakKB < 200 * 1024, "peak RSS of the corpus run: \(peakKB) KB")
    print("malformed corpus: \(cs.count) cases, peak RSS \(peakKB / 1024) MB")
  }

  /// The inputs too big to commit: 100k-deep JSON as config.json, tokenizer.json and a
  /// safetensors header, a 100k-deep IR attribute, a 30k-deep pipeline.
  static func generatedCases(in dir: String) throws -> [Case] {
    mkdir(dir, 0o755)
    let deep = String(repeating: "[", count: 100_000)
    var out: [Case] = []
    writeText(dir + "/deep-config.json", deep)
    out.append(Case(format: "config", path: dir + "/deep-config.json", expect: ["config.json:@", "nesting"]))
    writeText(dir + "/deep-tokenizer.json", deep)
    out.append(Case(format: "tokenizer", path: dir + "/deep-tokenizer.json", expect: ["tokenizer.json:@", "nesting"]))
    var st: [UInt8] = []
    withUnsafeBytes(of: UInt64(deep.utf8.count).littleEndian) { st += $0 }
    st += Array(deep.utf8)
    writeBytes(dir + "/deep-header.safetensors", st)
    out.append(Case(format: "safetensors", path: dir + "/deep-header.safetensors", expect: ["model.safetensors:@", "nesting"]))
    writeText(dir + "/deep-attribute.ir", "module @m attributes {a = \(deep)}\n")
    out.append(Case(format: "ir", path: dir + "/deep-attribute.ir", expect: ["deep-attribute.ir:1:"]))
    writeText(dir + "/deep-pipeline.txt", String(repeating: "dce(", count: 30_000))
    out.append(Case(format: "pipeline", path: dir + "/deep-pipeline.txt", expect: ["-passes"]))
    return out
  }
}

func writeBytes(_ path: String, _ bytes: [UInt8]) {
  let f = fopen(path, "wb")
  _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
  fclose(f)
}

func writeText(_ path: String, _ s: String) { writeBytes(path, Array(s.utf8)) }
