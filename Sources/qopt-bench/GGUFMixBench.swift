import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// `qopt-bench gguf-mix`: whole-model llama-quantize mixes through the `qopt` binary built
/// beside this one, from the shared Q4_1 GGUF (import included): wall time (median of three)
/// and peak RSS per mix, plus the CPU time the run took, so that a loaded machine shows.
///
/// llama-quantize's side of the comparison (F32 → Q4_K_M on the same machine, `/usr/bin/time
/// -v`) comes from `scripts/crosscheck-llama-quantize`, which needs llama.cpp's binaries; the
/// table in docs/backends.md puts both together.
func runGGUFMixBench() {
  let model = "../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf"
  let qopt = emitBenchExecutableDirectory() + "/qopt"
  guard fileExists(model) else {
    print("gguf-mix: \(model) not found (run from the repository root)")
    return
  }
  let scratch = "/tmp/qopt-gguf-mix-bench-\(getpid())"
  mkdir(scratch, 0o755)
  defer { removeTree(scratch) }
  let threads = 2
  var rows: [[String]] = []
  for args in [["q4_k_m"], ["q6_k"], ["q8_0"], ["q4_0", "-gguf-pure"]] {
    let out = scratch + "/out.gguf"
    var runs: [(EmitBenchChild, Double)] = []
    for _ in 0..<3 {
      removeTree(out)
      sync()
      let cpu0 = childCPUSeconds()
      let r = emitBenchRun(
        qopt,
        [model, "-emit=gguf:\(args[0])"] + args.dropFirst() + ["-threads=\(threads)", "-o", out])
      runs.append((r, childCPUSeconds() - cpu0))
    }
    let (r, cpu) = runs.sorted { $0.0.wall < $1.0.wall }[1]
    let ok = runs.allSatisfy { $0.0.status == 0 }
    rows.append([
      "qopt MODEL.gguf -emit=gguf:" + args.joined(separator: " "), emitBenchFormat(r.wall, 2),
      emitBenchFormat(cpu, 2), emitBenchFormat(runs.map(\.0.rssMiB).max() ?? 0, 0),
      ok ? runs.map { emitBenchFormat($0.0.wall, 2) }.joined(separator: " / ") : "FAILED",
    ])
  }
  printTable(
    "GGUF mixes from the shared Q4_1 GGUF (\(threads) threads, import included)",
    ["command", "wall s (median of 3)", "CPU s", "peak RSS MiB", "runs"], rows)
}

/// User + system seconds of the waited-for children so far.
private func childCPUSeconds() -> Double {
  var ru = rusage()
  getrusage(RUSAGE_CHILDREN.rawValue, &ru)
  return Double(ru.ru_utime.tv_sec) + Double(ru.ru_utime.tv_usec) / 1e6
    + Double(ru.ru_stime.tv_sec) + Double(ru.ru_stime.tv_usec) / 1e6
}
