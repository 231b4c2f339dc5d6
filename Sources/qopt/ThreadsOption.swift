import ArgumentParser
import QoptRuntime

/// `-threads`, shared by the commands that do matrix work.
///
/// Given, it is the exact count (and part of an autoround checkpoint's fingerprint). Left out,
/// the limit is the CPUs this process may run on and the count follows the ones other
/// processes leave free (QoptRuntime's BLASThreads.swift), so the default never loses to
/// `-threads 1` on a busy machine.
enum ThreadsOption {
  static let help = ArgumentHelp(
    "Threads for matrix work and passes (default: the CPUs this process may use, fewer while other processes keep them busy).",
    valueName: "n")

  /// Sets the process's thread policy from the option as given (nil: not given).
  static func apply(_ given: Int?) {
    if let given { BLAS.fixThreads(given) } else { BLAS.followFreeCores(limit: defaultThreads()) }
  }
}

/// The CPUs this process may run on (its affinity mask): the thread limit when `-threads` is not
/// given.
func defaultThreads() -> Int { CPULoad.allowedCPUCount }
