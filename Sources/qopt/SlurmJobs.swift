/// The batch scripts `qopt slurm` writes into `WORK/slurm/` and submits: the cache phase as a
/// job of its own when the plan has one (`qopt cache WORK`), one job array for the units (task
/// k runs `qopt unit WORK k`, after the cache job succeeded: `--dependency=afterok:CACHE`) and
/// a merge job that starts after every array task succeeded (`--dependency=afterok:UNITS`). Each task is a plain `qopt` invocation with
/// absolute paths, so the scripts can be read, edited and resubmitted by hand.
struct SlurmJobs {
  /// Absolute path of the qopt binary that the tasks run.
  var qopt: String
  /// Absolute path of the work folder (on storage every node sees).
  var work: String
  var units: Int
  /// Whether the plan has a cache phase.
  var cache: Bool
  /// The tasks of the plan's data-shards phase (0: none).
  var dataShards = 0
  /// Extra `#SBATCH` arguments (`-sbatch-arg`), in order.
  var extra: [String]

  var folder: String { work + "/slurm" }
  var shardsScript: String { folder + "/shards.sbatch" }
  var cacheScript: String { folder + "/cache.sbatch" }
  var unitsScript: String { folder + "/units.sbatch" }
  var mergeScript: String { folder + "/merge.sbatch" }

  /// The data-shards phase: a job array, task k writes data shard k's partials.
  var shardsText: String {
    script(
      name: "qopt-shards", file: "shards", log: "shard-%a.log",
      options: ["--array=0-\(dataShards - 1)"],
      command: "\(quoted(qopt)) shard \(quoted(work)) \"$SLURM_ARRAY_TASK_ID\" -quiet")
  }

  /// The cache phase: one task; files already stored for the plan are skipped when rerun.
  /// With a data-shards phase, it starts once every task of job array `shardsJob` succeeded.
  func cacheText(after shardsJob: String?) -> String {
    script(
      name: "qopt-cache", file: "cache", log: "cache.log", options: dependency(shardsJob),
      command: "\(quoted(qopt)) cache \(quoted(work)) -quiet")
  }

  private func dependency(_ job: String?) -> [String] {
    job.map { ["--dependency=afterok:\($0)", "--kill-on-invalid-dep=yes"] } ?? []
  }

  /// The job array: task k is unit k; a finished unit is skipped when the task is rerun. With
  /// a cache phase, it starts once cache job `cacheJob` succeeded.
  func unitsText(after cacheJob: String?) -> String {
    let after = dependency(cacheJob)
    return script(
      name: "qopt-units", file: "units", log: "unit-%a.log",
      options: ["--array=0-\(units - 1)"] + after,
      command: "\(quoted(qopt)) unit \(quoted(work)) \"$SLURM_ARRAY_TASK_ID\" -quiet")
  }

  /// The merge job, started once every task of job array `unitsJob` exited 0.
  func mergeText(after unitsJob: String) -> String {
    script(
      name: "qopt-merge", file: "merge", log: "merge.log",
      options: ["--dependency=afterok:\(unitsJob)", "--kill-on-invalid-dep=yes"],
      command: "\(quoted(qopt)) merge \(quoted(work)) -quiet")
  }

  private func script(
    name: String, file: String, log: String, options: [String], command: String
  ) -> String {
    var s = "#!/bin/bash\n"
    s += "# Written by qopt slurm; resubmit with: sbatch \(folder)/\(file).sbatch\n"
    s += "#SBATCH --job-name=\(name)\n"
    s += "#SBATCH --output=\(folder)/\(log)\n"
    for o in options + extra { s += "#SBATCH \(o)\n" }
    s += "set -e\n"
    s += "exec \(command)\n"
    return s
  }

  private func quoted(_ s: String) -> String { shellQuoted(s, force: true) }
}
