import ArgumentParser
import QoptIR
import QoptPluginHost

#if canImport(Glibc)
  import Glibc
#endif

/// `qopt slurm`: plans (as `qopt plan`), writes the batch scripts into `WORK/slurm/`, submits
/// the units as one job array and the merge after it with `sbatch --parsable`, and prints the
/// job ids. With `-wait` it returns when the merge job has ended, with its exit status
/// (docs/scale-out.md).
struct SlurmCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "slurm",
    abstract: "Plan, then run the units as a Slurm job array and merge after them.",
    helpNames: [.customLong("help", withSingleDash: true), .short, .long])

  @OptionGroup var plan: PlanOptions

  @Flag(
    name: .customLong("wait", withSingleDash: true),
    help: "Return when the merge job has ended, with its exit status.")
  var wait = false

  @Option(
    name: .customLong("sbatch-arg", withSingleDash: true),
    help:
      "An extra #SBATCH line for every job, e.g. --partition=cpu or --cpus-per-task=16 (repeatable)."
  )
  var sbatchArgs: [String] = []

  func validate() throws { try plan.validate() }

  func run() throws {
    guard let sbatch = Subprocess.find("sbatch") else {
      throw WorkError(
        "slurm: sbatch is not on PATH (install Slurm's client commands, or run qopt plan, qopt unit and qopt merge yourself)"
      )
    }
    let (p, work) = try plan.make(commandWord: "slurm", extra: ["-wait", "-sbatch-arg="])
    print(p.summary(work: work), terminator: "")
    let jobs = SlurmJobs(
      qopt: absolutePath(PluginHeaders.currentExecutable()), work: work, units: p.units.count,
      cache: !p.cacheBlocks.isEmpty, dataShards: p.dataShards, extra: sbatchArgs)
    if !isDirectory(jobs.folder) && mkdir(jobs.folder, 0o755) != 0 {
      throw WorkError("\(jobs.folder): cannot create it (errno \(errno))")
    }
    var shardsJob: String?
    if jobs.dataShards > 1 {
      try write(jobs.shardsText, to: jobs.shardsScript)
      shardsJob = try submit(sbatch, jobs.shardsScript)
    }
    var cacheJob: String?
    if jobs.cache {
      try write(jobs.cacheText(after: shardsJob), to: jobs.cacheScript)
      cacheJob = try submit(sbatch, jobs.cacheScript)
    }
    try write(jobs.unitsText(after: cacheJob ?? shardsJob), to: jobs.unitsScript)
    let unitsJob = try submit(sbatch, jobs.unitsScript)
    try write(jobs.mergeText(after: unitsJob), to: jobs.mergeScript)
    let mergeJob = try submit(sbatch, jobs.mergeScript)
    print(
      "slurm: \(shardsJob.map { "data-shards job \($0) (array 0-\(jobs.dataShards - 1)), " } ?? "")\(cacheJob.map { "cache job \($0), " } ?? "")units job \(unitsJob) (array 0-\(p.units.count - 1)), merge job \(mergeJob); scripts and logs in \(jobs.folder)"
    )
    // A -wait may last hours: what was submitted shows at once, also through a pipe.
    fflush(nil)
    guard wait else { return }
    let state = try waitForEnd(job: mergeJob)
    guard state.name == "COMPLETED" && state.exit == 0 else {
      throw WorkError(
        "slurm: merge job \(mergeJob) ended \(state.name) (exit \(state.exit)); see the logs in \(jobs.folder); run this command again (finished units are skipped), or resubmit the failed tasks with sbatch --array=K \(jobs.unitsScript) and then run qopt merge \(work)"
      )
    }
    print("slurm: merge job \(mergeJob) completed; output \(p.output)")
  }

  private func write(_ text: String, to path: String) throws {
    let w = try AtomicFileWriter(path: path)
    try w.write(text)
    try w.commit()
  }

  /// Submits `script`; returns the job id `sbatch --parsable` prints.
  private func submit(_ sbatch: String, _ script: String) throws -> String {
    let (status, output) = try Subprocess.run([sbatch, "--parsable", script])
    let lines = output.split(separator: "\n").map { $0.trimmingSpaces() }
    guard status == 0, let last = lines.last,
      let id = last.split(separator: ";").first.map(String.init), !id.isEmpty,
      id.allSatisfy(\.isNumber)
    else {
      throw WorkError(
        "slurm: sbatch \(script) failed (exit \(status)): \(output.trimmingSpaces())")
    }
    return id
  }

  /// Polls `scontrol show job` until `job` has ended; its final state and exit code. (Without
  /// accounting, `sacct` knows nothing; `sbatch --wait` reports 0 for a job cancelled because
  /// a dependency failed, so the state is read instead.)
  private func waitForEnd(job: String) throws -> (name: String, exit: Int) {
    guard let scontrol = Subprocess.find("scontrol") else {
      throw WorkError("slurm: -wait needs scontrol on PATH")
    }
    let ended: Set<String> = [
      "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
      "BOOT_FAIL", "DEADLINE",
    ]
    var misses = 0
    while true {
      let (status, output) = try Subprocess.run([scontrol, "show", "job", job, "-o"])
      if status == 0, let state = field("JobState", in: output) {
        misses = 0
        if ended.contains(state) {
          let code =
            field("ExitCode", in: output)?.split(separator: ":").first.flatMap { Int($0) } ?? -1
          return (state, code)
        }
      } else {
        misses += 1
        if misses > 30 {
          throw WorkError("slurm: scontrol no longer knows job \(job): \(output.trimmingSpaces())")
        }
      }
      usleep(1_000_000)
    }
  }

  private func field(_ key: String, in text: String) -> String? {
    for word in text.split(whereSeparator: { $0 == " " || $0 == "\n" })
    where word.hasPrefix(key + "=") {
      return String(word.dropFirst(key.count + 1))
    }
    return nil
  }
}

extension StringProtocol {
  fileprivate func trimmingSpaces() -> String {
    var s = Substring(self)
    while let c = s.first, c.isWhitespace { s.removeFirst() }
    while let c = s.last, c.isWhitespace { s.removeLast() }
    return String(s)
  }
}
