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
/// every path of docs/scale-out.md's "Peak RSS by path" table, each as a child `qopt`:
/// `rtn<bits=4;group-size=128>` → compressed-tensors and that output imported again
/// (→ `-emit=gguf:q4_0`), `-emit=gguf:q4_0`, `rtn<scheme=fp8;group-size=-1>` and
/// `rtn<scheme=nvfp4>,fuse-scales` → compressed-tensors, a Q8_0 GGUF of the model imported
/// (rtn → compressed-tensors, → `-emit=gguf:q4_0`), `calibrate<samples=8;seqlen=256>` with
/// `autoround<iters=2>`, `autoround<iters=4>` and `gptq` on the first 2 blocks (`-blocks=0..1`,
/// or block 0 of a 1-layer model) → compressed-tensors, and the rtn pipeline planned as up to
/// 4 units (each unit and the merge), and prints wall, CPU (user+sys) and peak RSS beside the
/// checkpoint size. The targets (issue 22) are peak RSS ≤ 1.5 GiB (tensor-local pipelines,
/// emits, imports, units, merge) and ≤ 4 GiB (block-wise tuning) whatever the number of layers.
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
  func measure(_ work: String, _ args: [String]) {
    let r = emitBenchRun(qopt, args + ["-quiet"])
    rows.append((work, r))
    report(work, r)
  }
  let blocks = "-blocks=0..\(tuned)"
  let calib = "calibrate<samples=8;seqlen=256>"
  let rtn = "rtn<bits=4;group-size=128>"
  let ct = dir + "/ct"
  for (work, args) in [
    (
      "\(rtn) → compressed-tensors",
      [model, "-passes=\(rtn)", "-emit=compressed-tensors", "-o", ct]
    ),
    // Import of compressed-tensors: the rtn output above, packed int4, read back.
    (
      "compressed-tensors import → -emit=gguf:q4_0", [ct, "-emit=gguf:q4_0", "-o", dir + "/y.gguf"]
    ),
    ("-emit=gguf:q4_0", [model, "-emit=gguf:q4_0", "-o", dir + "/y.gguf"]),
    (
      "rtn<scheme=fp8;group-size=-1> → compressed-tensors",
      [model, "-passes=rtn<scheme=fp8;group-size=-1>", "-emit=compressed-tensors", "-o", ct]
    ),
    (
      "rtn<scheme=nvfp4>,fuse-scales → compressed-tensors",
      [model, "-passes=rtn<scheme=nvfp4>,fuse-scales", "-emit=compressed-tensors", "-o", ct]
    ),
    // A GGUF to import: Q8_0, decoded to f32 a chunk of rows at a time on import.
    ("-emit=gguf:q8_0", [model, "-emit=gguf:q8_0", "-o", dir + "/model.gguf"]),
    (
      "GGUF (q8_0) import, \(rtn) → compressed-tensors",
      [dir + "/model.gguf", "-passes=\(rtn)", "-emit=compressed-tensors", "-o", ct]
    ),
    (
      "GGUF (q8_0) import → -emit=gguf:q4_0",
      [dir + "/model.gguf", "-emit=gguf:q4_0", "-o", dir + "/y.gguf"]
    ),
    (
      "\(calib),autoround<iters=2>, blocks 0..\(tuned) → compressed-tensors",
      [
        model, blocks, "-passes=\(calib),autoround<iters=2>", "-emit=compressed-tensors", "-o", ct,
        "-threads", "2",
      ]
    ),
    (
      "\(calib),autoround<iters=4>, blocks 0..\(tuned) → compressed-tensors",
      [
        model, blocks, "-passes=\(calib),autoround<iters=4>", "-emit=compressed-tensors", "-o", ct,
        "-threads", "2",
      ]
    ),
    (
      "\(calib),gptq, blocks 0..\(tuned) → compressed-tensors",
      [
        model, blocks, "-passes=\(calib),gptq", "-emit=compressed-tensors", "-o", ct, "-threads",
        "2",
      ]
    ),
  ] {
    // The compressed-tensors import reads the rtn output; every other run writes a new one.
    if !work.hasPrefix("compressed-tensors import") { removeTree(ct) }
    measure(work, args)
    unlink(dir + "/y.gguf")
  }
  removeTree(ct)
  unlink(dir + "/model.gguf")
  // A plan of the rtn pipeline in up to 4 units: each unit and the merge measured (the plan not).
  let units = min(4, layers)
  let work = dir + "/merged.qopt-work"
  let plan = [
    "plan", model, "-passes=\(rtn)", "-emit=compressed-tensors", "-o", dir + "/merged",
    "-tasks=\(units)",
  ]
  if emitBenchRun(qopt, plan).status == 0 {
    for k in 0..<units { measure("unit \(k) of \(units) of \(rtn)", ["unit", work, "\(k)"]) }
    measure("merge of \(rtn) in \(units) units → compressed-tensors", ["merge", work])
  } else {
    print("  qopt plan failed; no unit or merge rows")
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
