import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// `calibrate<data-shards=N>`: the calibration windows cut into N contiguous shards whose
/// statistics are computed apart (each shard's windows in order, forward batches never
/// crossing a shard's end) and then added in shard order. The sum is defined that way whether
/// one process computes every shard or N processes compute one each (`shard=K`, saving its
/// partial statistics under `partials=DIR`) and a later run adds the saved partials
/// (`partials=DIR` alone): the same bits either way. `data-shards=1` (the default) adds
/// nothing and keeps the statistics of a plain run.
package struct CalibrationShards: Sendable, Equatable {
  package let count: Int
  package let windows: Int

  package init(count: Int, windows: Int) {
    self.count = count
    self.windows = windows
  }

  /// Shard k's windows: contiguous, as even as possible (`k·W/N ..< (k+1)·W/N`).
  package func range(_ k: Int) -> Range<Int> { (k * windows / count)..<((k + 1) * windows / count) }

  /// The shard window `w` belongs to.
  package func shard(of w: Int) -> Int {
    (0..<count).first { range($0).contains(w) } ?? count - 1
  }

  /// The end of the shard window `w` belongs to (a forward batch starting at `w` stops there).
  package func end(of w: Int) -> Int { range(shard(of: w)).upperBound }

  /// `DIR/calibrate-shard-K-of-N.json`.
  package static func path(_ dir: String, _ k: Int, of n: Int) -> String {
    dir + "/calibrate-shard-\(k)-of-\(n).json"
  }
}

extension CalibrationData.ChannelStats {
  /// Adds `o`, the statistics of the windows right after these (observed from empty
  /// statistics), in a fixed order of float operations: per-channel max and sums, global
  /// min/max, token ranges (the mean weighted by token counts), and the moving averages
  /// continued over `o`'s windows, `v ← m^k·(v − o.first) + o.v` with `m^k` multiplied out
  /// window by window (exact in real arithmetic: `o.v` started from `o`'s first window).
  package mutating func add(_ o: Self, momentum: Float) {
    guard o.windows > 0 else { return }
    guard windows > 0 else {
      self = o
      return
    }
    for j in absMax.indices {
      absMax[j] = Swift.max(absMax[j], o.absMax[j])
      meanSquare[j] += o.meanSquare[j]
    }
    min = Swift.min(min, o.min)
    max = Swift.max(max, o.max)
    var mk: Float = 1
    for _ in 0..<o.windows { mk *= momentum }
    movingMin = mk * (movingMin - o.firstMin) + o.movingMin
    movingMax = mk * (movingMax - o.firstMax) + o.movingMax
    movingAbsMax = mk * (movingAbsMax - o.firstAbsMax) + o.movingAbsMax
    tokenAbsMaxMin = Swift.min(tokenAbsMaxMin, o.tokenAbsMaxMin)
    tokenAbsMaxMax = Swift.max(tokenAbsMaxMax, o.tokenAbsMaxMax)
    tokenAbsMaxMean =
      (Float(tokens) * tokenAbsMaxMean + Float(o.tokens) * o.tokenAbsMaxMean)
      / Float(tokens + o.tokens)
    windows += o.windows
    tokens += o.tokens
  }

  /// Every field, floats as their bit patterns (a partial file reads back exactly).
  package var json: JSON {
    func bits(_ v: Float) -> JSON { .int(Int(v.bitPattern)) }
    return .object([
      ("abs_max", .array(absMax.map(bits))), ("sum_squares", .array(meanSquare.map(bits))),
      ("min", bits(min)), ("max", bits(max)), ("moving_min", bits(movingMin)),
      ("moving_max", bits(movingMax)), ("moving_abs_max", bits(movingAbsMax)),
      ("first_min", bits(firstMin)), ("first_max", bits(firstMax)),
      ("first_abs_max", bits(firstAbsMax)), ("token_abs_max_min", bits(tokenAbsMaxMin)),
      ("token_abs_max_mean", bits(tokenAbsMaxMean)), ("token_abs_max_max", bits(tokenAbsMaxMax)),
      ("windows", .int(windows)), ("tokens", .int(tokens)),
    ])
  }

  package init?(json j: JSON) {
    func f(_ k: String) -> Float? {
      j[k]?.intValue.flatMap { UInt32(exactly: $0) }.map(Float.init(bitPattern:))
    }
    func a(_ k: String) -> [Float]? {
      guard let items = j[k]?.arrayValue else { return nil }
      var out: [Float] = []
      for v in items {
        guard let b = v.intValue.flatMap({ UInt32(exactly: $0) }) else { return nil }
        out.append(Float(bitPattern: b))
      }
      return out
    }
    guard let am = a("abs_max"), let ms = a("sum_squares"), am.count == ms.count,
      let mn = f("min"), let mx = f("max"), let vmn = f("moving_min"), let vmx = f("moving_max"),
      let vab = f("moving_abs_max"), let fmn = f("first_min"), let fmx = f("first_max"),
      let fab = f("first_abs_max"), let tmn = f("token_abs_max_min"),
      let tme = f("token_abs_max_mean"), let tmx = f("token_abs_max_max"),
      let w = j["windows"]?.intValue, let t = j["tokens"]?.intValue
    else { return nil }
    self.init(columns: am.count)
    (absMax, meanSquare, min, max) = (am, ms, mn, mx)
    (movingMin, movingMax, movingAbsMax) = (vmn, vmx, vab)
    (firstMin, firstMax, firstAbsMax) = (fmn, fmx, fab)
    (tokenAbsMaxMin, tokenAbsMaxMean, tokenAbsMaxMax) = (tmn, tme, tmx)
    (windows, tokens) = (w, t)
  }
}

extension CalibrationShards {
  /// The shards of `calibrate`'s options over `windows` windows; throws for combinations
  /// that cannot be sharded exactly.
  init(_ o: CalibrateOptions, windows: Int) throws {
    guard o.dataShards <= windows else {
      throw PassError("data-shards=\(o.dataShards) is more than the \(windows) windows")
    }
    guard o.shard < o.dataShards else {
      throw PassError(
        "shard=\(o.shard) is not one of data-shards=\(o.dataShards) (0..\(o.dataShards - 1))")
    }
    if o.shard >= 0 && o.partials.isEmpty {
      throw PassError("shard=\(o.shard) needs partials=DIR (where its partial statistics go)")
    }
    if o.dataShards > 1 || !o.partials.isEmpty {
      if o.numerics == .llamaCpp {
        throw PassError(
          "data-shards and partials need numerics=qopt (llama.cpp's order of sums is not split)")
      }
      if !o.keepInputs.isEmpty {
        throw PassError("data-shards and partials do not keep input rows (keep-inputs)")
      }
      if !o.stats { throw PassError("data-shards and partials need stats") }
    }
    self.init(count: o.dataShards, windows: windows)
  }

  /// Adds `parts` (one dictionary per shard, in shard order) into one.
  static func add(
    _ parts: [[String: CalibrationData.ChannelStats]], momentum: Float
  ) -> [String: CalibrationData.ChannelStats] {
    var total = parts.first ?? [:]
    for part in parts.dropFirst() {
      for (name, s) in part {
        if var t = total[name] {
          t.add(s, momentum: momentum)
          total[name] = t
        } else {
          total[name] = s
        }
      }
    }
    return total
  }

  /// Writes shard `k`'s partial statistics to `DIR/calibrate-shard-K-of-N.json` atomically,
  /// tagged with the calibration's fingerprint.
  func save(
    _ stats: [String: CalibrationData.ChannelStats], shard k: Int, dir: String, data: String
  ) throws {
    if mkdir(dir, 0o755) != 0 && errno != EEXIST {
      throw PassError("\(dir): cannot create it (errno \(errno))")
    }
    let j = JSON.object([
      ("qopt_calibrate_shard", .int(1)), ("data", .string(data)), ("shard", .int(k)),
      ("shards", .int(count)),
      ("stats", .object(stats.keys.sorted().map { ($0, stats[$0]!.json) })),  // safe: a key
    ])
    let w = try AtomicFileWriter(path: Self.path(dir, k, of: count))
    try w.write(j.serialized + "\n")
    try w.commit()
  }

  /// Reads every shard's partial statistics from `dir`, refusing a missing file or one made
  /// for other calibration data or another shard count, and adds them in shard order.
  func load(
    dir: String, data: String, momentum: Float
  ) throws -> [String: CalibrationData.ChannelStats] {
    var parts: [[String: CalibrationData.ChannelStats]] = []
    for k in 0..<count {
      let p = Self.path(dir, k, of: count)
      guard fileExists(p) else {
        throw PassError(
          "\(p) is missing: run calibrate<…;data-shards=\(count);shard=\(k);partials=\(dir)> first")
      }
      guard let j = try? JSON.parse(try readFile(p)), j["qopt_calibrate_shard"]?.intValue == 1,
        let stats = j["stats"]?.objectPairs
      else { throw PassError("\(p): not a calibrate shard file") }
      guard j["data"]?.stringValue == data, j["shard"]?.intValue == k,
        j["shards"]?.intValue == count
      else {
        throw PassError(
          "\(p) was made for other calibration data or shards (\(j["data"]?.stringValue ?? "?"), this run: \(data)); run the shards again"
        )
      }
      var part: [String: CalibrationData.ChannelStats] = [:]
      for (name, v) in stats {
        guard let s = CalibrationData.ChannelStats(json: v) else {
          throw PassError("\(p): the statistics of \(name) are malformed")
        }
        part[name] = s
      }
      parts.append(part)
    }
    return Self.add(parts, momentum: momentum)
  }
}

extension ActivationStore {
  /// A store holding samples `r` of this one, drawing on the same budget.
  func copy(_ r: Range<Int>) throws -> ActivationStore {
    let s = ActivationStore(tokens: tokens, width: width, budget: budget)
    var b = [Float](repeating: 0, count: sampleFloats)
    for i in r {
      try b.withUnsafeMutableBufferPointer {
        try read(i, into: $0.baseAddress!)  // safe: a sample is non-empty
        try s.append($0.baseAddress!)  // safe: as above
      }
    }
    return s
  }
}

extension CalibrationShards {
  /// A plan's data-shards phase: N and the partials directory of the pipeline's
  /// `calibrate<data-shards=N;partials=DIR>` (N > 1, without `shard`); nil when it has none.
  package static func phase(of pipeline: [PassInvocation]) -> (count: Int, partials: String)? {
    for inv in pipeline {
      if let o = inv.options as? CalibrateOptions, o.dataShards > 1, !o.partials.isEmpty,
        o.shard < 0
      {
        return (o.dataShards, o.partials)
      }
    }
    return nil
  }

  /// Data shard `k`'s run of `pipeline` (`qopt shard WORK K`): `calibrate` with `shard=k`, and
  /// the passes up to the last one that forwards calibration data (calibrate, gptq, autoround),
  /// which write the shard's partials; the passes after it are left out.
  package static func shardRun(_ k: Int, of pipeline: [PassInvocation]) -> [PassInvocation] {
    let forwards: [UnitRule] = [.calibration, .blockwise]
    let last = pipeline.lastIndex { forwards.contains(UnitRule.of($0)) } ?? -1
    return pipeline.prefix(last + 1).map { inv in
      guard var o = inv.options as? CalibrateOptions else { return inv }
      o.shard = k
      return PassInvocation(pass: inv.pass, options: o, column: inv.column)
    }
  }
}
