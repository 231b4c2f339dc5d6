import QoptIR
import QoptPasses
import QoptTestSupport
import Testing

/// The pieces of `gptq<float-inputs>` over `calibrate`'s data shards that the end-to-end
/// comparison (`IR/passes/gptq/data-shards.ir`) cannot see one by one: a shard's Hessian sums
/// survive the partial file bit for bit, shards add in order (one shard: itself; an input a
/// shard never saw: nothing), and the file refusals.
@Suite struct GPTQHessianPartialTests {
  private let cols = 12, window = 4

  /// Sums over `windows` windows of random rows, the first token of each weighted 3 times.
  private func sums(seed: UInt64, windows: Int) -> GPTQHessian {
    var rng = SplitMix64(seed: seed)
    let x = (0..<(windows * window * cols)).map { _ in Float(rng.normal()) }
    var h = GPTQHessian(columns: cols, tokensPerWindow: window, sinkWeight: 3)
    x.withUnsafeBufferPointer { h.add($0.baseAddress!, count: windows * window) }
    return h
  }

  private func key(shard: Int = 0, block: Int = 2) -> GPTQHessianPartial.Key {
    GPTQHessianPartial.Key(
      data: "abc/7/16/-1", shards: 3, shard: shard, block: block, input: "blk.2/attn_q.weight",
      sinkWeight: 3, batch: 8)
  }

  private func bits(_ h: GPTQHessian) -> [UInt32] { h.matrix().map(\.bitPattern) }

  @Test func partialFileRoundTripsBitForBit() throws {
    try TestTemporary.withDirectory("gptq-partial") { dir in
      let h = sums(seed: 1, windows: 3)
      try GPTQHessianPartial.save(h, key(), dir: dir + "/p")
      // The input's `/` is not a path separator in the file name.
      #expect(
        GPTQHessianPartial.path(dir + "/p", key()).hasSuffix(
          "/gptq-shard-0-of-3/blk.2_attn_q.weight.hessian"))
      let back = try GPTQHessianPartial.load(key(), dir: dir + "/p", tokensPerWindow: window)
      #expect(bits(back) == bits(h))
      #expect(back.counts.rows == 12 && back.counts.weight == h.counts.weight)
      #expect(back.counts.weight == 12 + 3 * 2)
      // Raw f32 after a one-line header: the upper triangle, 12·13/2 floats.
      let size = try readFile(GPTQHessianPartial.path(dir + "/p", key())).count
      let header = try readFile(GPTQHessianPartial.path(dir + "/p", key())).split(separator: 0x0A)[
        0
      ].count
      #expect(size == header + 1 + 78 * 4)
    }
  }

  @Test func shardsAddInOrder() {
    let (a, b) = (sums(seed: 2, windows: 2), sums(seed: 3, windows: 3))
    // One shard is the shard itself.
    let one = GPTQHessianPartial.add([["q": a]])
    #expect(one["q"].map(bits) == bits(a))
    var ab = a
    ab.add(b)
    let two = GPTQHessianPartial.add([["q": a], ["q": b, "k": b]])
    #expect(two["q"].map(bits) == bits(ab))
    // "k" was reached by the second shard only: its sums are that shard's.
    #expect(two["k"].map(bits) == bits(b))
    #expect(ab.counts.rows == 20 && ab.counts.weight == 20 + 2 * 5)
  }

  @Test func refusesMissingForeignAndCutFiles() throws {
    try TestTemporary.withDirectory("gptq-partial") { dir in
      #expect(throws: PassError.self) {
        try GPTQHessianPartial.load(key(), dir: dir, tokensPerWindow: window)
      }
      try GPTQHessianPartial.save(sums(seed: 4, windows: 1), key(), dir: dir)
      // Asked for as block 3's: made for another key.
      var other = key()
      other.block = 3
      let p = GPTQHessianPartial.path(dir, key())
      try writeFileAtomically(GPTQHessianPartial.path(dir, other), readFile(p))
      do {
        _ = try GPTQHessianPartial.load(other, dir: dir, tokensPerWindow: window)
        Issue.record("a foreign partial was read")
      } catch let e as StorageError {
        #expect(e.message.contains("made for other calibration data, shards or gptq options"))
        #expect(
          e.message.contains("block 2")
            && e.message.contains("this run: abc/7/16/-1, shard 0 of 3, block 3"))
      }
      // Another window length: other sums.
      #expect(throws: StorageError.self) {
        try GPTQHessianPartial.load(key(), dir: dir, tokensPerWindow: window + 1)
      }
      // Cut short by 4 bytes.
      let bytes = try readFile(p)
      try writeFileAtomically(p, Array(bytes.dropLast(4)))
      do {
        _ = try GPTQHessianPartial.load(key(), dir: dir, tokensPerWindow: window)
        Issue.record("a cut partial was read")
      } catch let e as StorageError {
        #expect(e.message == "holds 308 bytes of Hessian, not the 312 of 12 columns")
      }
      try writeFileAtomically(p, Array("{\"stats\": {}}\n".utf8))
      #expect(throws: StorageError.self) {
        try GPTQHessianPartial.load(key(), dir: dir, tokensPerWindow: window)
      }
    }
  }
}

private func writeFileAtomically(_ path: String, _ bytes: [UInt8]) throws {
  let w = try AtomicFileWriter(path: path)
  try w.write(bytes)
  try w.commit()
}
