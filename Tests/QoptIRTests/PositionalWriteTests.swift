import Dispatch
import QoptIR
import QoptTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Positional writes go through the writer's own writing thread: from several threads at
/// once, in any order, of any size (empty, buffered, and larger than a buffer, which the caller
/// writes itself), they land where they were aimed, after the sequential header, once
/// `commit()` returns. `reserve` allocates ahead without changing the file's size.
@Test func positionalWritesFromManyThreadsLandInPlace() throws {
  let dir = TestTemporary.makeDirectory("unit-positional")
  defer { TestTemporary.remove(dir) }
  let header: [UInt8] = Array("header!!".utf8)
  // Chunk sizes around the 1 MiB buffer, in a seeded shuffled order over 4 threads.
  var r = SplitMix64(seed: 7)
  var sizes = [0, 1, 4095, 4096, 65_537, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 << 20]
  for _ in 0..<40 { sizes.append(Int(r.next() % 300_000)) }
  var offsets: [Int] = []
  var total = header.count
  for s in sizes {
    offsets.append(total)
    total += s
  }
  let expected = (0..<total).map { i in
    i < header.count ? header[i] : UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 7)
  }
  var order = Array(sizes.indices)
  order.shuffle(using: &r)
  let w = try AtomicFileWriter(path: dir + "/out.bin")
  w.reserve(total + (8 << 20))
  try w.write(header)
  try w.flush()
  let failures = Atomic<Int>(0)
  nonisolated(unsafe) let file = w
  expected.withUnsafeBytes { all in
    nonisolated(unsafe) let src = all
    let (orderCopy, offs, szs) = (order, offsets, sizes)
    DispatchQueue.concurrentPerform(iterations: 4) { t in
      for k in stride(from: t, to: orderCopy.count, by: 4) {
        let i = orderCopy[k]
        do {
          try file.write(
            UnsafeRawBufferPointer(rebasing: src[offs[i]..<(offs[i] + szs[i])]), at: offs[i])
        } catch {
          failures.add(1, ordering: .relaxed)
        }
      }
    }
  }
  #expect(failures.load(ordering: .relaxed) == 0)
  try w.moveSequentialPosition(to: total)
  try w.write([0xAB])
  try w.commit()
  let back = try readFile(dir + "/out.bin")
  #expect(back.count == total + 1)
  #expect(Array(back.prefix(total)) == expected)
  #expect(back.last == 0xAB)
}
