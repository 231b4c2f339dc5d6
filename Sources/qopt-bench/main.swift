import QoptRuntime

#if canImport(Glibc)
  import Glibc
#endif

/// `qopt-bench [rtn|all …]`: release-build benchmarks that print tables. Targets are ratios
/// against rates measured in the same run (see README "Benchmarks").
BLAS.startQuietly()  // as qopt does, so that its figures are qopt's
let which = Set(CommandLine.arguments.dropFirst())
let all = which.isEmpty || which.contains("all")
for (name, run) in Benchmarks.all where all || which.contains(name) {
  run()
}
