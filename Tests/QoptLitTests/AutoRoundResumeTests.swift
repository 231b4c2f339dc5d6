import QoptIR
import QoptTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Runs `sh -c command`; returns its pid.
private func spawn(_ command: String) -> pid_t {
  var pid: pid_t = 0
  let args = ["/bin/sh", "-c", command]
  var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
  defer { for a in argv { free(a) } }
  let rc = posix_spawn(&pid, "/bin/sh", nil, nil, &argv, environ)
  precondition(rc == 0, "posix_spawn failed")
  return pid
}

private func wait(_ pid: pid_t) -> Int32 {
  var status: Int32 = 0
  waitpid(pid, &status, 0)
  return status
}

/// A run killed with SIGKILL after its first block's checkpoint, then started again with the
/// same command, ends byte-identical to an uninterrupted run.
@Test func autoRoundResumesAfterKillBitIdentical() throws {
  let dir = TinyCheckpoints.scratchDirectory("autoround-resume")
  defer { TinyCheckpoints.removeTree(dir) }
  let qopt = TestPaths.binDir + "/qopt"
  let model = TestPaths.repoRoot + "/IR/examples/tiny-llama.ir"
  let ckpt = dir + "/ckpt"
  let pipeline = "calibrate<samples=8;seqlen=64>,autoround<iters=150;group-size=32;checkpoint-dir=\(ckpt)>"
  _ = wait(spawn("rm -rf '\(ckpt)'"))
  func command(_ out: String, checkpoint: Bool = true) -> String {
    let p = checkpoint ? pipeline : pipeline.replacingCheckpoint()
    return "exec '\(qopt)' -threads=1 -passes='\(p)' '\(model)' -o '\(out)' 2>/dev/null"
  }

  // Uninterrupted reference.
  #expect(wait(spawn(command(dir + "/full.ir", checkpoint: false))) == 0)

  // Killed once the first block is checkpointed (the second is then running).
  let pid = spawn(command(dir + "/resumed.ir"))
  var killedMidway = false
  for _ in 0..<6000 {
    if let s = try? readFile(ckpt + "/state.txt"), String(decoding: s, as: UTF8.self).contains("next=1") {
      kill(pid, SIGKILL)
      killedMidway = true
      break
    }
    usleep(5000)
  }
  let status = wait(pid)
  #expect(killedMidway, "the first block's checkpoint never appeared")
  #expect(status & 0x7f == SIGKILL, "the run ended before it could be killed (status \(status))")
  #expect(!fileExists(dir + "/resumed.ir"))

  // Same command again: resumes at block 2 and finishes.
  #expect(wait(spawn(command(dir + "/resumed.ir"))) == 0)
  #expect(try readFile(dir + "/full.ir") == readFile(dir + "/resumed.ir"))
  #expect(try readFile(dir + "/full.safetensors") == readFile(dir + "/resumed.safetensors"))
}

extension String {
  fileprivate func replacingCheckpoint() -> String {
    // "…;checkpoint-dir=DIR>" → "…>"
    guard let i = split(separator: ";").firstIndex(where: { $0.hasPrefix("checkpoint-dir=") }) else { return self }
    return split(separator: ";")[..<i].joined(separator: ";") + ">"
  }
}
