import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// Checkpoints of `finetune`, with `autoround`'s fingerprint rules (model, calibration data,
/// options and threads must match, or the checkpoint is refused with the reason):
///
/// - `DIR/params.bin`: every trainable linear's parameters and Adam moments, in model order,
///   each followed by its parameters at the best validation step (none while that is step 0);
/// - `DIR/state.txt`: the fingerprints, the steps done, each step's loss, each validated
///   step's validation loss and the best step.
///
/// Each file is written under a temporary name and renamed into place, the state last. The
/// sampler is replayed from the seed on resume (a permutation draw per step), so these files
/// are the whole state and a resumed run ends bit-identical to an uninterrupted one, keeping
/// the same best step.
struct FinetuneCheckpoint {
  let directory: String
  let model: String
  let data: String
  let options: String
  let wayOut: String

  struct Resumed {
    var step: Int
    var losses: [Double]
    var best: FinetuneBest
  }

  private static let magic = Array("QOPTFT2\n".utf8)

  static func isOwnFile(_ name: String) -> Bool {
    if name == "state.txt" || name == "params.bin" { return true }
    if name.hasPrefix("."), let r = name.firstRange(of: ".qopt-tmp-") {
      return isOwnFile(String(name[name.index(after: name.startIndex)..<r.lowerBound]))
    }
    return false
  }

  private var statePath: String { directory + "/state.txt" }
  private var paramsPath: String { directory + "/params.bin" }

  /// Makes the directory and its missing parents.
  private func makeDirectories() throws {
    var missing: [String] = []
    var p = directory
    while !p.isEmpty && p != "/" && !fileExists(p) {
      missing.insert(p, at: 0)
      p = parentDirectory(of: p)
    }
    for d in missing where mkdir(d, 0o755) != 0 {
      throw PassError(
        "cannot create checkpoint directory \(d): \(String(cString: strerror(errno)))")
    }
  }

  /// Loads the saved state into `linears`, or returns nil when there is none; refuses one
  /// made differently.
  func resume(into linears: [TrainableQuantLinear]) throws -> Resumed? {
    guard fileExists(statePath) else { return nil }
    let text = String(decoding: try readFile(statePath), as: UTF8.self)
    var fields: [String: String] = [:]
    var losses: [Double] = []
    var history: [(step: Int, loss: Double)] = []
    for line in text.split(separator: "\n") {
      if line.hasPrefix("loss "), let v = Double(line.dropFirst(5)) {
        losses.append(v)
      } else if line.hasPrefix("val ") {
        let parts = line.split(separator: " ")
        guard parts.count == 3, let s = Int(parts[1]), let v = Double(parts[2]) else {
          throw StorageError(file: statePath, offset: nil, message: "bad line '\(line)'")
        }
        history.append((s, v))
      } else if let eq = line.firstIndex(of: "=") {
        fields[String(line[..<eq])] = String(line[line.index(after: eq)...])
      }
    }
    for (key, mine) in [("model", model), ("data", data), ("options", options)] {
      guard let theirs = fields[key] else {
        throw StorageError(file: statePath, offset: nil, message: "missing '\(key)='")
      }
      guard theirs == mine else {
        let what: String
        switch key {
        case "data": what = "calibration data (hash/samples/seqlen/seed \(theirs), now \(mine))"
        case "options":
          let a = Set(theirs.split(separator: ";")), b = Set(mine.split(separator: ";"))
          what =
            "options (\(a.subtracting(b).sorted().joined(separator: ",")) → \(b.subtracting(a).sorted().joined(separator: ",")))"
        default: what = "model"
        }
        throw PassError("checkpoint in \(directory) was made with a different \(what); \(wayOut)")
      }
    }
    guard let s = fields["step"], let step = Int(s), losses.count == step else {
      throw StorageError(file: statePath, offset: nil, message: "missing or inconsistent 'step='")
    }
    guard let bs = fields["best-step"], let bestStep = Int(bs), bestStep <= step,
      let bl = fields["best-loss"], let bestLoss = Double(bl)
    else {
      throw StorageError(
        file: statePath, offset: nil,
        message: "missing or inconsistent 'best-step=' or 'best-loss='")
    }
    let b = try readFile(paramsPath)
    var pos = 0
    func fail(_ m: String) -> StorageError {
      StorageError(file: paramsPath, offset: pos, message: m)
    }
    func u32() throws -> Int {
      guard pos + 4 <= b.count else { throw fail("truncated") }
      defer { pos += 4 }
      return b[pos..<(pos + 4)].reversed().reduce(0) { $0 << 8 | Int($1) }
    }
    guard b.count >= 8, Array(b[0..<8]) == Self.magic else {
      throw fail("not a finetune checkpoint")
    }
    pos = 8
    guard try u32() == linears.count else { throw fail("holds another set of weights") }
    var bestParameters: [[[Float]]] = []
    for l in linears {
      let n = try u32()
      guard pos + n <= b.count, String(decoding: b[pos..<(pos + n)], as: UTF8.self) == l.name
      else { throw fail("expected \(l.name)") }
      pos += n
      func arrays(_ expected: [Int]) throws -> [[Float]] {
        var arrays: [[Float]] = []
        for want in expected {
          let count = try u32()
          guard count == want, pos + 4 * count <= b.count else {
            throw fail("bad sizes for \(l.name)")
          }
          var a = [Float](repeating: 0, count: count)
          a.withUnsafeMutableBytes { raw in
            b.withUnsafeBytes { src in
              raw.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[pos..<(pos + 4 * count)]))
            }
          }
          pos += 4 * count
          arrays.append(a)
        }
        return arrays
      }
      l.state = try arrays(l.state.map(\.count))
      let kept = try u32()
      guard kept == (bestStep == 0 ? 0 : 3) else { throw fail("bad best step for \(l.name)") }
      if kept > 0 { bestParameters.append(try arrays(l.parameters.map(\.count))) }
    }
    guard pos == b.count else { throw fail("trailing bytes") }
    var best = FinetuneBest()
    best.history = history
    best.step = bestStep
    best.loss = bestLoss
    best.parameters = bestStep == 0 ? nil : bestParameters
    return Resumed(step: step, losses: losses, best: best)
  }

  /// Saves the parameters, then the state naming `step` steps done.
  func save(
    step: Int, linears: [TrainableQuantLinear], losses: [Double], best: FinetuneBest
  )
    throws
  {
    try makeDirectories()
    let w = try AtomicFileWriter(path: paramsPath)
    func u32(_ v: Int) throws {
      try withUnsafeBytes(of: UInt32(v).littleEndian) { try w.write($0) }
    }
    func arrays(_ arrays: [[Float]]) throws {
      for a in arrays {
        try u32(a.count)
        try a.withUnsafeBytes { try w.write($0) }
      }
    }
    try w.write(Self.magic)
    try u32(linears.count)
    for (i, l) in linears.enumerated() {
      let n = Array(l.name.utf8)
      try u32(n.count)
      try w.write(n)
      try arrays(l.state)
      let kept = best.parameters?[i] ?? []
      try u32(kept.count)
      try arrays(kept)
    }
    try w.commit()
    var state = "model=\(model)\ndata=\(data)\noptions=\(options)\nstep=\(step)\n"
    state += "best-step=\(best.step)\nbest-loss=\(best.loss)\n"
    for l in losses { state += "loss \(l)\n" }
    for (s, l) in best.history { state += "val \(s) \(l)\n" }
    let s = try AtomicFileWriter(path: statePath)
    try s.write(Array(state.utf8))
    try s.commit()
  }
}
