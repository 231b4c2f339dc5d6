import QoptIR
import QoptTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The out-of-core paths on a small generated checkpoint (`qopt-gen-example -shape
/// tiny-sharded`): a Hub-style sharded bf16 checkpoint gives the same output bytes as the same
/// weights in one `model.safetensors`, and spilling quantized weights to disk changes nothing.
/// The 8B-scale figures are `qopt-bench ooc` (docs/backends.md), not a CI test.
@Suite(.serialized) struct OutOfCoreTests {
  static let qopt = TestPaths.binDir + "/qopt"
  static let gen = TestPaths.binDir + "/qopt-gen-example"

  /// Generates the sharded and the single-file checkpoint of one seed into `dir`.
  static func checkpoints(in dir: String) throws -> (sharded: String, single: String) {
    let sharded = dir + "/sharded", single = dir + "/single"
    for (out, extra) in [(sharded, [String]()), (single, ["-single-file"])] {
      let r = try ChildProcess.run(
        [gen, "-shape", "tiny-sharded", "-seed", "5", "-o", out] + extra)
      #expect(r.termination == .exited(0), "\(r.stdout)\(r.stderr)")
    }
    return (sharded, single)
  }

  /// Every file of an output (a directory's files by name, or the one file) as bytes, but for
  /// qopt-manifest.json, which records the command line (and so the input's path).
  static func files(_ path: String) -> [String: [UInt8]] {
    let entries = directoryEntries(path).filter { $0 != "qopt-manifest.json" }
    if entries.isEmpty { return ["": (try? readFile(path)) ?? []] }
    var out: [String: [UInt8]] = [:]
    for e in entries { out[e] = (try? readFile(path + "/" + e)) ?? [] }
    return out
  }

  @Test func generatedCheckpointIsShardedLikeTheHub() throws {
    try TestTemporary.withDirectory("ooc-gen") { dir in
      let (sharded, single) = try Self.checkpoints(in: dir)
      let names = directoryEntries(sharded).sorted()
      let shards = names.filter { $0.hasSuffix(".safetensors") }
      #expect(shards.count >= 3, "\(names)")
      #expect(shards.first == "model-00001-of-0000\(shards.count).safetensors")
      #expect(names.contains("model.safetensors.index.json") && names.contains("config.json"))
      #expect(directoryEntries(single).sorted() == ["config.json", "model.safetensors"])
      // The same tensors either way, drawn from the generator's per-tensor streams.
      let one = try SafetensorsFile(path: single + "/model.safetensors")
      var seen = 0
      for shard in shards {
        for (name, t) in try SafetensorsFile(path: sharded + "/" + shard).tensors {
          #expect(t.dtype == .bf16)
          #expect(one.tensor(named: name)?.isIdentical(to: t) == true, "\(name)")
          seen += 1
        }
      }
      #expect(seen == one.tensors.count && seen == 4 * 9 + 3)
      let norm = try #require(one.tensor(named: "model.norm.weight"))
      let expected = HFCheckpointGenerator.values(
        "model.norm.weight", kind: .norm, count: 128, cols: 128, seed: 5)
      #expect(norm.bytes == expected.withUnsafeBytes { Array($0) })
      #expect(norm.floats().allSatisfy { abs($0 - 1) <= 0.05 })
    }
  }

  struct Case: CustomStringConvertible, Sendable {
    var name: String
    var args: [String]
    var output: String
    var description: String { name }
  }

  static let cases = [
    Case(
      name: "rtn-ct",
      args: ["-passes=rtn<bits=4;group-size=128>", "-emit=compressed-tensors"], output: "ct"),
    Case(name: "gguf-q4_0", args: ["-emit=gguf:q4_0"], output: "out.gguf"),
    Case(
      name: "rtn-gguf", args: ["-passes=rtn<scheme=q4_k>", "-emit=gguf"], output: "rtn.gguf"),
  ]

  @Test(arguments: cases)
  func shardedAndSpilledRunsMatchTheSingleFileRun(_ c: Case) throws {
    try TestTemporary.withDirectory("ooc-\(c.name)") { dir in
      let (sharded, single) = try Self.checkpoints(in: dir)
      var outputs: [[String: [UInt8]]] = []
      for (i, (model, spill)) in [(single, "never"), (sharded, "never"), (sharded, "always")]
        .enumerated()
      {
        let out = dir + "/\(i)-" + c.output
        let r = try ChildProcess.run(
          [Self.qopt, "-threads", "2", model] + c.args + ["-spill-weights=\(spill)", "-o", out])
        #expect(r.termination == .exited(0), "\(r.stderr)")
        outputs.append(Self.files(out))
        #expect(
          !directoryEntries(dir).contains { $0.contains("qopt-spill") }, "spill folder removed")
      }
      #expect(!outputs[0].isEmpty)
      func differing(_ k: Int) -> [String] {
        Set(outputs[0].keys).union(outputs[k].keys).filter { outputs[0][$0] != outputs[k][$0] }
          .sorted()
      }
      #expect(differing(1).isEmpty, "sharded input changes these files")
      #expect(differing(2).isEmpty, "spilling changes these files")
    }
  }

  @Test func generatorRefusesAnUnknownShape() throws {
    let r = try ChildProcess.run([Self.gen, "-shape", "llama-9b", "-o", "/nonexistent"])
    #expect(r.termination == .exited(1))
    #expect(r.stdout.contains("unknown shape 'llama-9b' (one of: llama-8b, tiny-sharded)"))
  }
}
