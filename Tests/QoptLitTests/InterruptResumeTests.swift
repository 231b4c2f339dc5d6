import QoptIR
import QoptTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Interrupt and resume by default (issue #16 item 4): `autoround` with `-o OUT` checkpoints
/// into `OUT.qopt-resume/`, Ctrl-C prints what was kept and the command that resumes, that
/// command finishes bit-identical to an uninterrupted run, and the checkpoint is gone after.
@Suite(.serialized) struct InterruptResumeTests {
  let qopt = TestPaths.binDir + "/qopt"
  let model = TestPaths.repoRoot + "/IR/examples/tiny-llama.ir"
  let pipeline = "calibrate<samples=8;seqlen=64>,autoround<iters=150;group-size=32>"

  func arguments(_ out: String) -> [String] {
    [qopt, "-threads=1", "-passes=" + pipeline, model, "-o", out]
  }

  /// Starts `arguments`, waits until the default checkpoint holds a finished block, sends
  /// `signal`; returns how the run ended and its stderr.
  func interrupt(
    _ argv: [String], checkpoint: String, with signal: Int32
  ) throws -> (ChildProcess.Termination, String, Bool) {
    let child = try ChildProcess(argv)
    var sent = false
    for _ in 0..<6000 {
      if String(decoding: (try? readFile(checkpoint + "/state.txt")) ?? [], as: UTF8.self).contains(
        "next=1")
      {
        child.kill(signal)
        sent = true
        break
      }
      usleep(5000)
    }
    let (termination, _) = child.wait()
    return (termination, child.output().stderr, sent)
  }

  @Test func ctrlCThenTheSameCommandResumesBitIdentical() throws {
    let dir = TinyCheckpoints.scratchDirectory("interrupt-resume")
    defer { TinyCheckpoints.removeTree(dir) }
    let full = dir + "/full.ir", resumed = dir + "/resumed.ir"

    // Uninterrupted reference; its default checkpoint is removed once the output is written.
    let reference = try ChildProcess.run(arguments(full))
    #expect(reference.termination == .exited(0), "\(reference.stderr)")
    #expect(!fileExists(full + ".qopt-resume"), "the checkpoint outlived a successful run")

    // Ctrl-C once the first of the two blocks is kept.
    let checkpoint = resumed + ".qopt-resume/autoround"
    let (ended, stderr, sent) = try interrupt(
      arguments(resumed), checkpoint: checkpoint, with: SIGINT)
    #expect(sent, "the first block's checkpoint never appeared")
    #expect(ended == .exited(130), "\(stderr)")
    #expect(
      stderr.contains("qopt: interrupted; autoround kept 1/2 blocks in \(checkpoint)"), "\(stderr)")
    #expect(!fileExists(resumed), "an interrupted run left an output")
    #expect(fileExists(checkpoint + "/state.txt"))

    // The printed command, run as printed (through a shell), resumes and finishes.
    let lines = stderr.split(separator: "\n")
    let marker = try #require(
      lines.firstIndex { $0 == "qopt: to resume, run the same command:" }, "\(stderr)")
    let command = String(try #require(lines.dropFirst(marker + 1).first).dropFirst(2))
    #expect(command.contains("'-passes=\(pipeline)'"), "\(command)")
    let rerun = try ChildProcess.run(["/bin/sh", "-c", command])
    #expect(rerun.termination == .exited(0), "\(rerun.stderr)")
    #expect(
      rerun.stderr.contains("autoround: resuming at block 1/2 from \(checkpoint)"),
      "\(rerun.stderr)")
    #expect(try readFile(full) == readFile(resumed))
    #expect(
      try readFile(full.replacingSuffix(".ir", ".safetensors"))
        == readFile(resumed.replacingSuffix(".ir", ".safetensors")))
    #expect(!fileExists(resumed + ".qopt-resume"), "the checkpoint outlived the resumed run")
  }

  /// SIGTERM (a job scheduler stopping the run) keeps the checkpoint too; the exit status is
  /// 128 + 15.
  @Test func sigtermKeepsTheCheckpoint() throws {
    let dir = TinyCheckpoints.scratchDirectory("interrupt-term")
    defer { TinyCheckpoints.removeTree(dir) }
    let out = dir + "/out.ir"
    let (ended, stderr, sent) = try interrupt(
      arguments(out), checkpoint: out + ".qopt-resume/autoround", with: SIGTERM)
    #expect(sent)
    #expect(ended == .exited(143), "\(stderr)")
    #expect(stderr.contains("autoround kept 1/2 blocks"), "\(stderr)")
    #expect(!fileExists(out))
    #expect(fileExists(out + ".qopt-resume/autoround/state.txt"))
  }
}

extension String {
  fileprivate func replacingSuffix(_ a: String, _ b: String) -> String {
    hasSuffix(a) ? String(dropLast(a.count)) + b : self
  }
}
