import QoptIR
import QoptTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// A killed writer's `.NAME.qopt-tmp-PID` is found (and only that one): the name must come out
/// of `readdir` whole. Regression for the compressed-tensors fuzz target, which caught the old
/// `d_name` copy reading past short directory records (crash input kept as
/// `Fuzz/corpus/compressed-tensors/regression-dirent-overrun`).
@Test func staleTemporariesAreThoseOfDeadProcesses() throws {
  let dir = TestTemporary.makeDirectory("unit-stale")
  defer { TestTemporary.remove(dir) }
  let dead = dir + "/.out.gguf.qopt-tmp-999999999"  // above any pid_max: never alive
  let live = dir + "/.out.gguf.qopt-tmp-\(getppid())"
  for p in [dead, live, dir + "/.other.gguf.qopt-tmp-999999999", dir + "/a"] { writeBytes([1], to: p) }
  #expect(staleTemporaries(of: dir + "/out.gguf", kind: "tmp") == [dead])
  // The next writer of the same output removes it.
  let w = try AtomicFileWriter(path: dir + "/out.gguf")
  try w.write([1, 2, 3])
  try w.commit()
  #expect(access(dead, F_OK) != 0)
  #expect(access(live, F_OK) == 0)
}
