import QoptIR

/// `qopt-bench plugin`: peak RSS of a read-only plugin pass over the shared model, against
/// `verify` (which reads no weight data). The sample ActClip plugin's `weight-stats` reads
/// every weight through `weight_read_f32`; with `view_release` (its default) it holds one
/// weight at a time, with `no-release` every view stays until the run returns. Target: under
/// 300 MB with release (docs/writing-a-plugin.md keeps the figures).
func runPluginBench(model: String = "../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf") {
  let dir = emitBenchExecutableDirectory()
  let qopt = dir + "/qopt", plugin = dir + "/libActClip.so"
  guard fileExists(model), fileExists(plugin) else {
    print("plugin: skipped (needs \(model) and \(plugin))")
    return
  }
  print("plugin: peak RSS of one qopt run over \(model)")
  print("| command | peak RSS (MiB) | wall (s) |")
  print("|---|---|---|")
  let runs: [(String, [String])] = [
    ("-passes=verify", ["-quiet", "-passes=verify", model]),
    (
      "-passes=weight-stats",
      ["-quiet", "-load-pass-plugin=" + plugin, "-passes=weight-stats", model]
    ),
    (
      "-passes=weight-stats<no-release>",
      ["-quiet", "-load-pass-plugin=" + plugin, "-passes=weight-stats<no-release>", model]
    ),
  ]
  for (label, args) in runs {
    // The printed module and the remark go to /dev/null; `exec` keeps one process.
    let r = emitBenchRun("/bin/sh", ["-c", "exec \"$0\" \"$@\" >/dev/null 2>&1", qopt] + args)
    let status = r.status == 0 ? "" : " (exit \(r.status))"
    print(
      "| `\(label)` | \(emitBenchFormat(r.rssMiB, 1))\(status) | \(emitBenchFormat(r.wall, 2)) |")
  }
}
