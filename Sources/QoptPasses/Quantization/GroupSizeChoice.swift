import QoptIR

/// `group-size=auto`, the default of `rtn` and `autoround`: a group size every backend loads.
///
/// Integer schemes take 128 (what auto-round and llm-compressor users expect) where it divides
/// the row, otherwise the largest of 64 and 32 that divides it, otherwise one scale per row:
/// vLLM's kernels and compressed-tensors need groups that divide the input dimension, and
/// GGUF's blocks are 32 wide. FP8 takes one scale per row (llm-compressor's FP8 weights).
/// An explicit `group-size=N` is used as given (a short last group where N does not divide).
enum GroupSizeChoice {
  /// The candidates of `auto` for integer schemes, in order of preference.
  static let candidates = [128, 64, 32]

  /// The granularity for a row of `columns` weights: `explicit` (-1 per channel, 0 per
  /// tensor, N groups of N), or with nil the `auto` rule for `scheme` (`int` or `fp8`).
  static func granularity(explicit: Int?, columns: Int, scheme: String = "int") -> Granularity {
    if let g = explicit {
      return switch g {
      case -1: .channel
      case 0: .tensor
      default: .group(g)
      }
    }
    if scheme == "fp8" { return .channel }
    for g in candidates where columns % g == 0 { return .group(g) }
    return .channel
  }

  /// One line saying what `auto` chose: "group-size auto: 128 for 30 weights (1536 columns);
  /// 64 for 180 weights (576 columns)".
  static func summary(_ chosen: [(columns: Int, granularity: Granularity)]) -> String {
    var byChoice: [(Granularity, Int, [Int])] = []  // choice, weights, row lengths
    for (c, g) in chosen {
      if let i = byChoice.firstIndex(where: { $0.0 == g }) {
        byChoice[i].1 += 1
        if !byChoice[i].2.contains(c) { byChoice[i].2.append(c) }
      } else {
        byChoice.append((g, 1, [c]))
      }
    }
    func size(_ g: Granularity) -> Int {
      switch g {
      case .group(let n): n
      case .channel: Int.max
      case .tensor: 0
      }
    }
    let parts = byChoice.sorted { size($0.0) > size($1.0) }.map { g, n, cols in
      let what = switch g {
      case .group(let s): "\(s)"
      case .channel: "per channel"
      case .tensor: "per tensor"
      }
      return "\(what) for \(n) weight\(n == 1 ? "" : "s") (\(cols.sorted(by: >).map(String.init).joined(separator: ", ")) columns)"
    }
    return "group-size auto: " + parts.joined(separator: "; ")
  }
}

extension OptionField {
  /// `group-size`: `auto` (nil, `GroupSizeChoice`), -1 per channel, 0 per tensor or a size.
  static func groupSize(_ key: String, _ path: WritableKeyPath<O, Int?> & Sendable, _ help: String, in range: ClosedRange<Int>) -> OptionField {
    OptionField(
      key: key, help: help, kind: .autoOrInt(range),
      apply: { o, v in
        switch v {
        case .int(let n): o[keyPath: path] = n
        case .auto: o[keyPath: path] = nil
        default: break
        }
      }, render: { $0[keyPath: path].map(String.init) ?? "auto" })
  }
}
