import QoptRuntime
import Testing

/// The thread choice of the default `-threads` (no timings: the counters are given).

/// /proc/stat of a 2-CPU machine: the "cpu" line is the sum and must not be counted twice.
private let procStat = """
  cpu  300 20 100 5000 40 5 5 0 0 0
  cpu0 100 10 50 2500 20 3 2 0 0 0
  cpu1 200 10 50 2500 20 2 3 0 0 0
  intr 12345 0 0
  ctxt 999
  """

@Test func busyTicksSumTheAllowedCPUsWithoutIdleAndIowait() {
  // cpu0: 100+10+50+3+2 = 165; cpu1: 200+10+50+2+3 = 265.
  #expect(CPULoad.busyTicks(procStat: procStat, cpus: nil) == 430)
  #expect(CPULoad.busyTicks(procStat: procStat, cpus: [1]) == 265)
  #expect(CPULoad.busyTicks(procStat: procStat, cpus: [0, 1, 7]) == 430)
  #expect(CPULoad.busyTicks(procStat: procStat, cpus: [5]) == nil)
  #expect(CPULoad.busyTicks(procStat: "intr 1 2\n", cpus: nil) == nil)
}

@Test func stealCountsAsBusy() {
  #expect(CPULoad.busyTicks(procStat: "cpu0 1 0 0 100 0 0 0 7 0 0\n", cpus: nil) == 8)
}

@Test func othersBusySubtractsThisProcess() {
  let a = CPULoad.Sample(busyTicks: 1000, ownSeconds: 2.0, time: 10)
  // 150 ticks at 100 Hz over 1 s: 1.5 cores busy, 0.5 of them this process.
  let b = CPULoad.Sample(busyTicks: 1150, ownSeconds: 2.5, time: 11)
  #expect(abs((CPULoad.othersBusy(from: a, to: b, ticksPerSecond: 100) ?? -1) - 1.0) < 1e-9)
  // Tick rounding can make this process look busier than the whole machine: never negative.
  let c = CPULoad.Sample(busyTicks: 1010, ownSeconds: 2.5, time: 11)
  #expect(CPULoad.othersBusy(from: a, to: c, ticksPerSecond: 100) == 0)
  #expect(CPULoad.othersBusy(from: a, to: a, ticksPerSecond: 100) == nil)
}

@Test func threadsFollowTheFreeCores() {
  #expect(CPULoad.threads(cpus: 2, othersBusy: 0, limit: 2) == 2)
  #expect(CPULoad.threads(cpus: 2, othersBusy: 0.3, limit: 2) == 2)  // background noise
  #expect(CPULoad.threads(cpus: 2, othersBusy: 0.67, limit: 2) == 1)  // one busy neighbour
  #expect(CPULoad.threads(cpus: 2, othersBusy: 2, limit: 2) == 1)
  #expect(CPULoad.threads(cpus: 2, othersBusy: 9.8, limit: 2) == 1)  // never below 1
  #expect(CPULoad.threads(cpus: 8, othersBusy: 3, limit: 8) == 5)
  #expect(CPULoad.threads(cpus: 8, othersBusy: 0, limit: 4) == 4)  // the limit
  #expect(CPULoad.threads(cpus: 2, othersBusy: 0, limit: 16) == 2)  // never above the CPUs
  #expect(CPULoad.threads(cpus: 2, othersBusy: -1, limit: 2) == 2)
}

/// The measure runs while qopt's own threads take their share of the CPUs, so what other
/// processes get depends on the count chosen. With fair sharing (k busy neighbours and n qopt
/// threads on c CPUs: the neighbours get min(k, c·k/(k+n))) the choice must settle, not flip
/// between counts, and settle on the free cores.
@Test func choiceSettlesUnderFairSharing() {
  func settle(cpus c: Int, neighbours k: Int) -> [Int] {
    var n = c
    var seen = [n]
    for _ in 0..<6 {
      let others = min(Double(k), Double(c) * Double(k) / Double(k + n))
      n = CPULoad.threads(cpus: c, othersBusy: others, limit: c)
      seen.append(n)
    }
    return seen
  }
  #expect(settle(cpus: 2, neighbours: 0).allSatisfy { $0 == 2 })
  #expect(settle(cpus: 2, neighbours: 1).dropFirst().allSatisfy { $0 == 1 })
  #expect(settle(cpus: 2, neighbours: 2).dropFirst().allSatisfy { $0 == 1 })
  #expect(Set(settle(cpus: 4, neighbours: 2).suffix(3)) == [2])
  #expect(Set(settle(cpus: 8, neighbours: 1).suffix(3)) == [7])
}

@Test func runnableOthersFromLoadavg() {
  #expect(CPULoad.runnableOthers(loadavg: "0.46 1.35 0.95 3/91 11807\n") == 2)
  #expect(CPULoad.runnableOthers(loadavg: "0.46 1.35 0.95 1/91 11807") == 0)
  #expect(CPULoad.runnableOthers(loadavg: "0.46 1.35") == nil)
  #expect(CPULoad.runnableOthers(loadavg: "a b c x/91 1") == nil)
}

@Test func theAffinityMaskIsReadable() {
  let cpus = CPULoad.allowedCPUs()
  #expect(cpus.map { !$0.isEmpty } ?? true)
  #expect(CPULoad.allowedCPUCount >= 1)
  #expect(CPULoad.sample(cpus: cpus) != nil)
}

/// `-threads N` is exact; without it the count follows, and a pass's own count is a limit.
@Test func explicitThreadsStayFixed() {
  defer { BLAS.fixThreads(2) }
  BLAS.fixThreads(1)
  #expect(BLAS.followedThreads == nil)
  #expect(BLAS.threads == 1)
  BLAS.adapt()
  #expect(BLAS.threads == 1)
  BLAS.useThreads(2)
  #expect(BLAS.threads == 2)

  BLAS.followFreeCores(limit: 1)
  #expect(BLAS.followedThreads == 1)
  #expect(BLAS.threads == 1)
  BLAS.useThreads(4)  // a pass asking for more than the limit does not get more than measured
  #expect(BLAS.threads == 1)
}

@Test func cpuListsAsTheKernelWritesThem() {
  #expect(CPULoad.cpuList("0-1") == [0, 1])
  #expect(CPULoad.cpuList(" 0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11])
  #expect(CPULoad.cpuList("5") == [5])
  #expect(CPULoad.cpuList("") == nil)
  #expect(CPULoad.cpuList("3-1") == nil)
  #expect(CPULoad.cpuList("a-b") == nil)
  #expect(CPULoad.cpuList("1-2-3") == nil)
}
