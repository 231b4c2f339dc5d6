/// Every benchmark, by name, one line each.
enum Benchmarks {
  static let all: [(String, @Sendable () -> Void)] = [
    ("autoround", runAutoRoundBench),
    ("emit", { runEmitBench() }),
    ("eval", runEvalBench),
    ("gguf-mix", runGGUFMixBench),
    ("kernels", runKernelsBench),
    ("ooc", { runOOCBench() }),
    ("plugin", { runPluginBench() }),
    ("rtn", runRTNBench),
    ("threads", runThreadsBench),
  ]
}
