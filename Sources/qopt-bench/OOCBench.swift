import QoptIR
import QoptTestSupport

#if canImport(Glibc)
  import Glibc
#endif

/// Out-of-core benchmark (`qopt-bench ooc [-ooc-layers=N] [-ooc-dir=DIR]`): peak memory of a
/// child `qopt` on a generated bf16 checkpoint much larger than what it may hold.
///
/// Generates a Llama-3-8B-shaped checkpoint (`CheckpointShape.llama8b`, Hub-style 5 GB shards)
/// with `N` layers (default 2: ~2.9 GB, embedding and lm_head 1 GB each; 32 is the full 16 GB
/// model) into `DIR` (default /tmp/qopt-ooc-bench, deleted afterwards), then runs
/// `rtn<bits=4;group-size=128>` → compressed-tensors, `-emit=gguf:q4_0`,
/// `calibrate<samples=8;seqlen=256>,autoround<iters=2>` on the first 2 blocks
/// (`-blocks=0..1`, or block 0 of a 1-layer model) → compressed-tensors, and the `qopt merge`
/// of the rtn pipeline planned as 2 units (`plan`/`unit` run first, unmeasured), each as a
/// child, and prints wall, CPU (user+sys) and peak RSS beside the checkpoint size.
/// The targets (issue 22) are peak RSS ≤ 1.5 GiB (rtn, emit, merge) and ≤ 4 GiB (autoround)
/// whatever the number of layers.
public func runOOCBench() {
  var layers = 2
  var dir = "/tmp/qopt-ooc-bench"
  for a in CommandLine.arguments {
    if a.hasPrefix("-ooc-layers="), let n = Int(a.dropFirst("-ooc-layers=".count)), n > 0 {
      layers = n
    }
    if a.hasPrefix("-ooc-dir=") { dir = String(a.dropFirst("-ooc-dir=".count)) }
  }
  removeTree(dir)
  mkdir(dir, 0o755)
  defer { removeTree(dir) }
  var shape = CheckpointShape.llama8b
  shape.layers = layers
  let model = dir + "/model"
  let t = emitBenchClock()
  let summary: HFCheckpointGenerator.Summary
  do { summary = try HFCheckpointGenerator.write(shape, to: model, seed: 1) } catch {
    print("  generating the checkpoint failed: \(error)")
    return
  }
  let gib = Double(summary.tensorBytes) / Double(1 << 30)
  print(
    "ooc benchmark: llama-8b widths, \(layers) layers, \(emitBenchFormat(gib, 2)) GiB of bf16 in "
      + "\(summary.files.count - 2) shards (generated in \(emitBenchFormat(emitBenchClock() - t, 1)) s)"
  )
  let qopt = emitBenchExecutableDirectory() + "/qopt"
  let tuned = min(layers, 2) - 1
  func report(_ work: String, _ r: EmitBenchChild) {
    print(
      "  \(work): exit \(r.status), wall \(emitBenchFormat(r.wall, 1)) s, CPU "
        + "\(emitBenchFormat(r.cpu, 1)) s, peak RSS \(emitBenchFormat(r.rssMiB, 0)) MiB")
  }
  var rows: [(String, EmitBenchChild)] = []
  for (work, args) in [
    (
      "rtn<bits=4;group-size=128> → compressed-tensors",
      [model, "-passes=rtn<bits=4;group-size=128>", "-emit=compressed-tensors", "-o", dir + "/ct"]
    ),
    ("-emit=gguf:q4_0", [model, "-emit=gguf:q4_0", "-o", dir + "/q4_0.gguf"]),
    (
      "calibrate<samples=8;seqlen=256>,autoround<iters=2>, blocks 0..\(tuned) → compressed-tensors",
      [
        model, "-blocks=0..\(tuned)", "-passes=calibrate<samples=8;seqlen=256>,autoround<iters=2>",
        "-emit=compressed-tensors", "-o", dir + "/ct", "-threads", "2",
      ]
    ),
  ] {
    let r = emitBenchRun(qopt, args + ["-quiet"])
    rows.append((work, r))
    report(work, r)
    removeTree(dir + "/ct")
    unlink(dir + "/q4_0.gguf")
  }
  // The merge of a 2-unit rtn plan: the units run first (not measured), then the merge alone.
  let work = dir + "/merged.qopt-work"
  let plan = [
    "plan", model, "-passes=rtn<bits=4;group-size=128>", "-emit=compressed-tensors", "-o",
    dir + "/merged", "-tasks=\(min(2, layers))",
  ]
  var prepared = emitBenchRun(qopt, plan).status == 0
  for k in 0..<min(2, layers) where prepared {
    prepared = emitBenchRun(qopt, ["unit", work, "\(k)", "-quiet"]).status == 0
  }
  if prepared {
    let r = emitBenchRun(qopt, ["merge", work, "-quiet"])
    let what = "merge of rtn<bits=4;group-size=128> in \(min(2, layers)) units → compressed-tensors"
    rows.append((what, r))
    report(what, r)
  } else {
    print("  merge: qopt plan/unit failed; no merge row")
  }
  removeTree(dir + "/merged")
  removeTree(work)
  print(
    "\n| work (\(layers) layers, \(emitBenchFormat(gib, 2)) GiB bf16) | wall (s) | CPU (s) | peak RSS (MiB) | RSS / checkpoint |"
  )
  print("|---|---|---|---|---|")
  for (w, r) in rows {
    let ratio = r.rssMiB / (gib * 1024)
    print(
      "| \(w) | \(emitBenchFormat(r.wall, 1)) | \(emitBenchFormat(r.cpu, 1)) | "
        + "\(emitBenchFormat(r.rssMiB, 0)) | \(emitBenchFormat(ratio, 3)) |")
  }
}
