// Benchmarks: `qopt-bench eval [-threads N] [-windows N]`.
func option(_ args: [String], _ name: String, _ dv: Int) -> Int {
  guard let i = args.firstIndex(of: name), i + 1 < args.count, let v = Int(args[i + 1]) else { return dv }
  return v
}
let args = Array(CommandLine.arguments.dropFirst())
if args.first ?? "eval" == "eval" {
  try runEvalBench(threads: option(args, "-threads", 2), windows: option(args, "-windows", 40))
}
