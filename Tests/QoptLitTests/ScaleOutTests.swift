import QoptIR
import QoptTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Runs a pipeline on the shared SmolLM2 model three ways and checks every output file
/// byte-identical: one process; `qopt plan -tasks=4`, the cache phase (`qopt cache`), the 4
/// units run one after another in a shuffled order, `qopt merge`; and, where
/// `scripts/slurm-local start` brings up a single-node Slurm, `qopt slurm -tasks=4 -wait`
/// (cache job, units array, merge; skipped with the script's message otherwise). Small calibration (8 windows of 128 tokens, 5 iterations) keeps it short.
@Suite(.serialized) struct ScaleOutTests {
  static let model = TestPaths.shared + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"

  @Test(arguments: [
    ("rtn", "rtn<bits=4;group-size=32>", [3, 1, 0, 2]),
    (
      "autoround",
      "calibrate<samples=8;seqlen=128>,autoround<iters=5;group-size=32;quanted-input=false>",
      [2, 0, 3, 1]
    ),
  ])
  func unitsAndSlurmMatchOneProcess(_ tag: String, _ pipeline: String, _ order: [Int]) throws {
    try #require(
      fileExists(Self.model),
      "missing \(Self.model): the real-model tests need ../shared beside the checkout")
    let dir = TinyCheckpoints.scratchDirectory("scale-out-\(tag)")
    defer { TinyCheckpoints.removeTree(dir) }
    let qopt = "'\(TestPaths.binDir)/qopt'"
    // The same arguments for every run but -o (what the manifests record).
    let args = "-threads=2 -passes='\(pipeline)' '\(Self.model)' -emit=compressed-tensors"
    try #require(system("\(qopt) \(args) -o '\(dir)/single' 2>/dev/null") == 0)

    try #require(system("\(qopt) plan \(args) -o '\(dir)/units' -tasks=4 >/dev/null") == 0)
    let work = dir + "/units.qopt-work"
    // The cache phase (nothing to do for rtn): block 7, 15 and 22's float inputs, 8 windows
    // × 128 tokens × 576 floats each, as calibrate (batch 8) and autoround (batch 4) make them.
    try #require(system("\(qopt) cache '\(work)' -quiet 2>/dev/null") == 0)
    if tag == "autoround" {
      for recipe in ["batch-8", "batch-4"] {
        for block in [7, 15, 22] {
          let path = "\(work)/cache/inputs-\(recipe)-block-\(block).f32"
          let bytes = try readFile(path)
          let header = bytes.firstIndex(of: 10).map { $0 + 1 } ?? 0
          #expect(bytes.count - header == 8 * 128 * 576 * 4, "\(path)")
        }
      }
    }
    for k in order {
      try #require(system("\(qopt) unit '\(work)' \(k) -quiet 2>/dev/null") == 0, "unit \(k)")
    }
    try #require(system("\(qopt) merge '\(work)' -quiet") == 0)
    #expect(system("diff -r '\(dir)/single' '\(dir)/units'") == 0)

    let (started, conf) = Self.startSlurm()
    guard let conf else {
      print("ScaleOutTests: Slurm part skipped: \(started)")
      return
    }
    defer { _ = system("'\(TestPaths.repoRoot)/scripts/slurm-local' stop >/dev/null 2>&1") }
    let status = system(
      "SLURM_CONF='\(conf)' \(qopt) slurm \(args) -o '\(dir)/slurm' -tasks=4 -wait >'\(dir)/slurm.txt' 2>&1"
    )
    let said = (try? readFile(dir + "/slurm.txt")).map { String(decoding: $0, as: UTF8.self) } ?? ""
    try #require(status == 0, "qopt slurm: \(said)")
    #expect(said.contains("merge job"))
    #expect(said.contains("cache job") == (tag == "autoround"), "\(said)")
    #expect(system("diff -r '\(dir)/single' '\(dir)/slurm'") == 0)
  }

  /// `scripts/slurm-local start`: the slurm.conf path (its last line), or nil with why not.
  static func startSlurm() -> (String, String?) {
    let script = TestPaths.repoRoot + "/scripts/slurm-local"
    guard fileExists(script) else { return ("\(script) does not exist", nil) }
    guard let r = try? ChildProcess.run([script, "start"]) else {
      return ("\(script) could not be started", nil)
    }
    guard r.termination == .exited(0),
      let last = r.stdout.split(separator: "\n").last.map(String.init), last.hasPrefix("/")
    else {
      return ("scripts/slurm-local start: \(r.termination): \(r.stderr)", nil)
    }
    return ("", last)
  }
}
