/// Every benchmark, by name, one line each.
enum Benchmarks {
  static let all: [(String, @Sendable () -> Void)] = [
    ("eval", runEvalBench),
    ("rtn", runRTNBench),
  ]
}
