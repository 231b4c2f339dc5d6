import QoptIR

/// `-blocks=A..B`: a run that quantizes only the weights of decoder blocks A..B (inclusive,
/// 0-based, in `@main`'s call order), so that block ranges can run as separate processes
/// (`qopt plan`, `qopt unit`) and be merged.
///
/// What the selection means, for every pass:
/// - weight-selecting passes (`rtn`, `fp8`, `nvfp4`, `fuse-scales`, `autoround`, `gptq`, `awq`,
///   `smoothquant`, `assign-schemes`, `quantize-activations`) select only weights read by the
///   `param`s of block functions A..B; every other weight — blocks outside the range, the
///   embedding, the output head — is left exactly as the input had it (float stays float);
/// - `calibrate` runs its float forward through block B and no further (statistics exist for
///   blocks 0..B only);
/// - `autoround` and `gptq` forward blocks 0..A-1 as float (unquantized) blocks to get block A's
///   inputs and stop after block B; with their float-input options (`quanted-input=false`,
///   `float-inputs`) block A..B's results are exactly those of a run over the whole model.
public struct BlockSelection: Sendable, Equatable, CustomStringConvertible {
  public let range: ClosedRange<Int>

  public init(_ range: ClosedRange<Int>) { self.range = range }

  /// `A..B` or `A` (one block); throws a message for anything else.
  public init(parsing text: String) throws(BlockSelectionError) {
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    let bounds: [Int?]
    if parts.count == 1 {
      bounds = [Int(parts[0]), Int(parts[0])]
    } else if parts.count == 3 && parts[1].isEmpty {
      bounds = [Int(parts[0]), Int(parts[2])]
    } else {
      throw BlockSelectionError(
        "-blocks expects A..B (e.g. 0..3) or one block index, found '\(text)'")
    }
    guard let a = bounds[0], let b = bounds[1], a >= 0, b >= a else {
      throw BlockSelectionError(
        "-blocks expects A..B with 0 <= A <= B (e.g. 0..3) or one block index, found '\(text)'")
    }
    range = a...b
  }

  public var description: String { "\(range.lowerBound)..\(range.upperBound)" }

  /// The number of decoder blocks `@main` calls.
  public static func blockCount(of module: Module) throws -> Int {
    try ModelBlocks(module: module).blocks.count
  }

  /// Refuses a selection past the model's last block.
  public func check(against module: Module) throws {
    let n = try Self.blockCount(of: module)
    guard range.upperBound < n else {
      throw BlockSelectionError(
        "-blocks=\(self): the model has \(n) decoder blocks (0..\(n - 1))")
    }
  }

  /// The weights read by `param`s of the selected block functions.
  func weights(in module: Module) throws -> Set<String> {
    let blocks = try ModelBlocks(module: module).blocks
    var out = Set<String>()
    for bi in range where bi < blocks.count {
      for op in blocks[bi].body { if let n = op.paramName { out.insert(n) } }
    }
    return out
  }

  /// Which block reads each weight (weights outside every block are absent).
  public static func owners(in module: Module) throws -> [String: Int] {
    var out: [String: Int] = [:]
    for (bi, f) in try ModelBlocks(module: module).blocks.enumerated() {
      for op in f.body { if let n = op.paramName, out[n] == nil { out[n] = bi } }
    }
    return out
  }
}

/// A malformed or out-of-range `-blocks` selection.
public struct BlockSelectionError: DiagnosticError {
  public let message: String
  init(_ message: String) { self.message = message }
  public var diagnostics: [Diagnostic] { [Diagnostic(.error, message)] }
}

extension PassContext {
  /// The weights of `selected` inside the run's block selection (all of them without one).
  func restrictedToBlocks(_ selected: [(Op, String)]) throws -> [(Op, String)] {
    guard let blocks else { return selected }
    let inside = try blocks.weights(in: module)
    return selected.filter { inside.contains($0.1) }
  }
}
