import QoptPasses
import QoptTestSupport
import Testing

/// `SchemeKnapsack` (the exact solver of `assign-schemes`) against brute force.
@Suite struct SchemeKnapsackTests {
  typealias Item = SchemeKnapsack.Item

  /// Every assignment, in the solver's order of preference: least damage (summed in group
  /// order), then least size, then smallest choices compared from the last group to the first.
  static func bruteForce(_ groups: [[Item]], budget: Int) -> SchemeKnapsack.Solution? {
    var best: SchemeKnapsack.Solution?
    var pick = [Int](repeating: 0, count: groups.count)
    func better(_ a: SchemeKnapsack.Solution, _ b: SchemeKnapsack.Solution) -> Bool {
      if a.damage != b.damage { return a.damage < b.damage }
      if a.size != b.size { return a.size < b.size }
      for i in stride(from: a.choice.count - 1, through: 0, by: -1) where a.choice[i] != b.choice[i]
      {
        return a.choice[i] < b.choice[i]
      }
      return false
    }
    func visit(_ i: Int) {
      if i == groups.count {
        var d = 0.0
        var s = 0
        for (g, k) in pick.enumerated() {
          d += groups[g][k].damage
          s += groups[g][k].size
        }
        guard s <= budget else { return }
        let sol = SchemeKnapsack.Solution(choice: pick, size: s, damage: d)
        if best == nil || better(sol, best!) { best = sol }
        return
      }
      for k in groups[i].indices {
        pick[i] = k
        visit(i + 1)
      }
    }
    visit(0)
    return best
  }

  /// 400 random instances, sizes in bytes with no common unit and small integer damages (so
  /// ties are common and sums exact): the solver's assignment is brute force's, tie-break
  /// included.
  @Test func matchesBruteForceOnRandomInstances() throws {
    var rng = SplitMix64(seed: 21)
    func int(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
    for trial in 0..<400 {
      let groups = (0..<(1 + int(6))).map { _ in
        (0..<(1 + int(4))).map { _ in
          Item(size: 1 + int(trial % 2 == 0 ? 40 : 5000), damage: Double(int(8)))
        }
      }
      let lo = groups.reduce(0) { $0 + $1.map(\.size).min()! }
      let hi = groups.reduce(0) { $0 + $1.map(\.size).max()! }
      let budget = lo + int(hi - lo + 1)
      let want = try #require(Self.bruteForce(groups, budget: budget))
      let got = try SchemeKnapsack.solve(groups, budget: budget)
      #expect(got == want, "trial \(trial): \(groups) budget \(budget)")
    }
  }

  /// Fractional damages and sizes that share a large unit (as tensor sizes do).
  @Test func matchesBruteForceWithRealDamages() throws {
    var rng = SplitMix64(seed: 5)
    for trial in 0..<200 {
      let groups = (0..<(2 + Int(rng.next() % 5))).map { _ in
        (0..<(2 + Int(rng.next() % 4))).map { _ in
          Item(size: 1152 * (1 + Int(rng.next() % 30)) + 64, damage: rng.uniform())
        }
      }
      let lo = groups.reduce(0) { $0 + $1.map(\.size).min()! }
      let budget = lo + Int(rng.next() % UInt64(1152 * 40))
      let want = try #require(Self.bruteForce(groups, budget: budget))
      #expect(try SchemeKnapsack.solve(groups, budget: budget) == want, "trial \(trial)")
    }
  }

  /// Equal damage and size: the smaller index of the last group wins, then of the earlier ones.
  @Test func tiesAreDeterministic() throws {
    let g = [Item(size: 10, damage: 1), Item(size: 10, damage: 1)]
    let s = try SchemeKnapsack.solve([g, g, g], budget: 30)
    #expect(s.choice == [0, 0, 0])
    let cheaper = [Item(size: 20, damage: 1), Item(size: 10, damage: 1)]
    #expect(try SchemeKnapsack.solve([cheaper], budget: 30).choice == [1])
  }

  /// A budget below every weight's smallest candidate is refused with the sizes in the message.
  @Test func infeasibleBudgetIsAnError() {
    let g = [Item(size: 10, damage: 1), Item(size: 20, damage: 0)]
    #expect(throws: SchemeKnapsack.Failure.infeasible(smallest: 20, budget: 19)) {
      try SchemeKnapsack.solve([g, g], budget: 19)
    }
    #expect(throws: SchemeKnapsack.Failure.badGroup(1)) {
      try SchemeKnapsack.solve([g, []], budget: 100)
    }
  }
}
