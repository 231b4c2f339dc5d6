/// The exact solver behind `assign-schemes`: a multiple-choice knapsack. Every group (a
/// weight) picks exactly one item (a candidate scheme, with its exact emitted size in bytes and
/// its estimated damage); the total size must not exceed the budget; the total damage is
/// minimised.
///
/// Exact, not greedy: dynamic programming over the size axis in units of `g`, the greatest
/// common divisor of every item's size above its group's smallest, so every reachable total is
/// a whole number of units and no size is rounded. The table is `groups × units` choices (one
/// byte each); for the shared model (210 tensors, sizes in multiples of 64 bytes) that is a
/// few tens of MB.
///
/// Ties are broken deterministically: among the assignments of least damage, the one of least
/// total size; among those, the one whose choices, compared from the last group to the first,
/// have the smallest item indices. Damages are summed in group order, so the same assignment
/// always has the same total.
package enum SchemeKnapsack {
  package struct Item: Sendable, Equatable {
    package var size: Int
    package var damage: Double
    package init(size: Int, damage: Double) {
      self.size = size
      self.damage = damage
    }
  }

  package struct Solution: Sendable, Equatable {
    /// The chosen item index of every group.
    package var choice: [Int]
    package var size: Int
    package var damage: Double
    package init(choice: [Int], size: Int, damage: Double) {
      (self.choice, self.size, self.damage) = (choice, size, damage)
    }
  }

  package enum Failure: Error, Equatable {
    /// Even the smallest item of every group exceeds the budget.
    case infeasible(smallest: Int, budget: Int)
    /// A group with no items, or more than 255.
    case badGroup(Int)
    /// The size axis has too many units for the exact table (`units × groups` cells).
    case tooLarge(cells: Int)

    package var message: String {
      switch self {
      case .infeasible(let s, let b):
        "the budget of \(b) bytes is below the smallest assignment (\(s) bytes: every weight at its smallest candidate)"
      case .badGroup(let g): "weight \(g) has no candidate (or more than 255)"
      case .tooLarge(let c):
        "the exact solver would need a table of \(c) cells; give fewer candidates or a coarser size"
      }
    }
  }

  /// Largest table (`groups × (units + 1)` one-byte cells) the solver builds.
  package static let maxCells = 400_000_000

  package static func solve(_ groups: [[Item]], budget: Int) throws(Failure) -> Solution {
    for (i, g) in groups.enumerated() where g.isEmpty || g.count > 255 { throw .badGroup(i) }
    let base = groups.map { $0.map(\.size).min()! }
    let smallest = base.reduce(0, +)
    guard smallest <= budget else { throw .infeasible(smallest: smallest, budget: budget) }
    var g = 0
    for (i, items) in groups.enumerated() {
      for it in items { g = gcd(g, it.size - base[i]) }
    }
    g = max(g, 1)
    let spread = zip(groups, base).reduce(0) { $0 + ($1.0.map(\.size).max()! - $1.1) / g }
    let units = min((budget - smallest) / g, spread)
    let width = units + 1
    let cells = groups.count * width
    guard cells <= maxCells else { throw .tooLarge(cells: cells) }
    // best[c]: least (damage, size above base) of the groups so far within c units.
    var damage = [Double](repeating: 0, count: width)
    var extra = [Int](repeating: 0, count: width)
    var nextDamage = damage
    var nextExtra = extra
    var choice = [UInt8](repeating: 0, count: cells)
    for (i, items) in groups.enumerated() {
      let steps = items.map { ($0.size - base[i]) / g }
      choice.withUnsafeMutableBufferPointer { ch in
        let row = i * width
        for c in 0..<width {
          var bestD = Double.infinity
          var bestE = Int.max
          var bestK = 0
          for (k, it) in items.enumerated() where steps[k] <= c {
            let d = damage[c - steps[k]] + it.damage
            let e = extra[c - steps[k]] + steps[k]
            if d < bestD || (d == bestD && e < bestE) { (bestD, bestE, bestK) = (d, e, k) }
          }
          nextDamage[c] = bestD
          nextExtra[c] = bestE
          ch[row + c] = UInt8(bestK)
        }
      }
      swap(&damage, &nextDamage)
      swap(&extra, &nextExtra)
    }
    var picks = [Int](repeating: 0, count: groups.count)
    var c = units
    for i in stride(from: groups.count - 1, through: 0, by: -1) {
      let k = Int(choice[i * width + c])
      picks[i] = k
      c -= (groups[i][k].size - base[i]) / g
    }
    var total = 0.0
    var size = 0
    for (i, k) in picks.enumerated() {
      total += groups[i][k].damage
      size += groups[i][k].size
    }
    return Solution(choice: picks, size: size, damage: total)
  }

  private static func gcd(_ a: Int, _ b: Int) -> Int {
    var (x, y) = (abs(a), abs(b))
    while y != 0 { (x, y) = (y, x % y) }
    return x
  }
}
