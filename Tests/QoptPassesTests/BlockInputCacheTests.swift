import QoptIR
import QoptPasses
import QoptTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The cache phase's stored block inputs (`BlockInputCache`): what is saved reads back bit for
/// bit; a file made for another run (plan, recipe, calibration data) or of another shape is
/// refused with its path named; a missing one is nil (the unit forwards instead); saving
/// leaves no temporary file beside it.
@Suite struct BlockInputCacheTests {
  /// 3 samples of 4 tokens × 5 floats with distinct bit patterns (negative zero, subnormal).
  private func store() -> ActivationStore {
    var v = (0..<60).map { Float($0) * 0.37 - 7 }
    v[5] = -0.0
    v[11] = Float.leastNonzeroMagnitude
    return ActivationStore.from(v, tokens: 4, width: 5)
  }

  private func cache(_ dir: String, base: String = "plan-a") -> BlockInputCache {
    BlockInputCache(directory: dir + "/cache", base: base, mode: .read)
  }

  @Test func roundTripsBitForBit() throws {
    try TestTemporary.withDirectory("bic") { dir in
      let c = cache(dir)
      let s = store()
      #expect(!c.isCurrent(recipe: "batch=8", block: 3, data: "d"))
      try c.save(s, recipe: "batch=8", block: 3, data: "d")
      #expect(c.isCurrent(recipe: "batch=8", block: 3, data: "d"))
      let back = try #require(
        try c.load(
          recipe: "batch=8", block: 3, data: "d", samples: 3, tokens: 4, width: 5,
          budget: MemoryBudget(bytes: 20 * 4)))
      // One sample fits the budget, the other two spill; all read back identical bits.
      #expect(back.spilled == 2)
      #expect(try back.all().map(\.bitPattern) == (try s.all()).map(\.bitPattern))
      #expect(directoryEntries(dir + "/cache").sorted() == ["inputs-batch-8-block-3.f32"])
    }
  }

  @Test func missingIsNil() throws {
    try TestTemporary.withDirectory("bic") { dir in
      let got = try cache(dir).load(
        recipe: "batch=4", block: 1, data: "d", samples: 3, tokens: 4, width: 5,
        budget: MemoryBudget(bytes: 1 << 20))
      #expect(got == nil)
    }
  }

  @Test func refusesAFileMadeDifferently() throws {
    try TestTemporary.withDirectory("bic") { dir in
      try cache(dir).save(store(), recipe: "batch=8", block: 2, data: "d")
      // Another plan (base), other calibration data, another shape: each refused by path.
      for (c, data, samples) in [
        (cache(dir, base: "plan-b"), "d", 3), (cache(dir), "e", 3), (cache(dir), "d", 4),
      ] {
        let e = #expect(throws: PassError.self) {
          _ = try c.load(
            recipe: "batch=8", block: 2, data: data, samples: samples, tokens: 4, width: 5,
            budget: MemoryBudget(bytes: 1 << 20))
        }
        #expect(e?.message.contains("cache/inputs-batch-8-block-2.f32") == true)
      }
      // Another recipe is another file: not there.
      let other = try cache(dir).load(
        recipe: "batch=4", block: 2, data: "d", samples: 3, tokens: 4, width: 5,
        budget: MemoryBudget(bytes: 1 << 20))
      #expect(other == nil)
    }
  }

  @Test func fingerprintCoversEveryInput() {
    let c = BlockInputCache(directory: "/x", base: "plan-a", mode: .read)
    let f = c.fingerprint(recipe: "batch=8", block: 1, data: "d")
    #expect(f != c.fingerprint(recipe: "batch=4", block: 1, data: "d"))
    #expect(f != c.fingerprint(recipe: "batch=8", block: 2, data: "d"))
    #expect(f != c.fingerprint(recipe: "batch=8", block: 1, data: "e"))
    #expect(
      f
        != BlockInputCache(directory: "/x", base: "plan-b", mode: .read).fingerprint(
          recipe: "batch=8", block: 1, data: "d"))
  }
}
