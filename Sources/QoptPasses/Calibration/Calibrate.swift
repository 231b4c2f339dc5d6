import QoptFormats
import QoptIR
import QoptRuntime

/// `calibrate`: tokenizes calibration text, cuts it into windows, runs the float model's
/// embedding to get the first block's inputs and the float blocks to collect per-linear input
/// statistics, and leaves all of it as the `calibration` analysis for later passes (`autoround`).
///
/// The module gets a fingerprint of what was used (`calib.data_hash`, `calib.samples`,
/// `calib.seqlen`, `calib.seed`), so a dump shows which data a quantized model saw.
let calibratePass = Pass(
  "calibrate",
  summary:
    "tokenize calibration data and cache the float model's block inputs and linear input statistics",
  details: calibrateDetails, options: CalibrateOptions.self, preserves: [CalibrationAnalysis.name]
) { module, options, context in
  if !options.allowLongContext,
    let problem = ContextLength.problem(
      seqlen: options.seqlen, module: module, override: "allow-long-context")
  {
    throw context.error(problem)
  }
  let (data, source) = try CalibrationText.load(options.data)
  let ids = try CalibrationText.tokens(of: data, source: source, module: module)
  let (n, len, bos) = (options.samples, options.seqlen, CalibrationText.addedBOS(of: module))
  let windows =
    options.windows == .consecutive
    ? try CalibrationText.consecutiveWindows(ids, samples: n, seqlen: len, bos: bos, source: source)
    : try CalibrationText.windows(ids, samples: n, seqlen: len, seed: options.seed, source: source)
  let seqlen = windows.first?.count ?? options.seqlen
  let model = try ModelBlocks(module: module)
  BLAS.useThreads(context.threads)

  // Block-0 inputs: the embedding rows of every window.
  let table = try model.embeddingLookup()
  let width = table.columns
  let store = ActivationStore(
    tokens: seqlen, width: width, budgetBytes: options.memoryBudgetMB << 20)
  var row = [Float](repeating: 0, count: seqlen * width)
  for w in windows {
    if let bad = w.first(where: { $0 < 0 || Int($0) >= table.rows }) {
      throw context.error(
        "token id \(bad) from \(source) is outside the model's vocabulary (0..<\(table.rows))")
    }
    try row.withUnsafeMutableBufferPointer { rp in
      table.lookup(w, rp.baseAddress!)  // safe: non-empty windows
      try store.append(rp.baseAddress!)  // safe: as above
    }
  }

  // Per-linear input statistics from the float blocks, block by block, `batch` samples at a
  // time: each block's outputs go to a store of their own (within the budget, spilling the
  // rest) and become the next block's inputs.
  var stats: [String: CalibrationData.ChannelStats] = [:]
  // The linears whose input rows are kept for plugins (`calibration_stats` "input_rows").
  let keep = Set(
    try WeightTargets(targets: options.keepInputs, ignore: []).select(in: module).map(\.1))
  if !keep.isEmpty && !options.stats { throw PassError("keep-inputs needs stats (drop no-stats)") }
  var kept: [String: ActivationStore] = [:]
  var keepError: (any Error)?
  let llama = options.numerics == .llamaCpp
  var llamaOrder = LlamaImatrixOrder(seqlen: seqlen)
  let hash = fnv1a64(data)
  let fingerprint = "\(hash)/\(windows.count)/\(seqlen)/\(options.seed)"
  // `data-shards`: statistics per contiguous shard of windows, added in shard order
  // (`CalibrationShards`); `shard=K` forwards only shard K's windows and saves its partial
  // statistics, `partials=DIR` alone reads every shard's and forwards nothing for them.
  let shards = try CalibrationShards(options, windows: windows.count)
  let readsPartials = !options.partials.isEmpty && options.shard < 0
  if options.shard >= 0 && (context.blocks != nil || context.blockInputCache != nil) {
    throw context.error(
      "shard=\(options.shard) runs on its own, not under -blocks or in a plan's units (give the plan partials=DIR alone)"
    )
  }
  let active = options.shard >= 0 ? shards.range(options.shard) : 0..<windows.count
  var parts = [[String: CalibrationData.ChannelStats]](repeating: [:], count: shards.count)
  var part = 0
  if options.stats {
    var x = try options.shard >= 0 ? store.copy(active) : store
    let batch = llama ? llamaOrder.forwardBatch : 8
    let n = seqlen * width
    var buffer = [Float](repeating: 0, count: min(batch, windows.count) * n)
    // Under `-blocks=A..B` the forward stops after block B: no later block's statistics are
    // needed.
    var last = min(context.blocks?.range.upperBound ?? Int.max, model.blocks.count - 1)
    // A plan's cache phase stores this forward's inputs of the units' first blocks and stops
    // at the last of them; a unit starts at its first block from them (`BlockInputCache`).
    let cache = context.blockInputCache
    let recipe =
      BlockInputCache.recipe(batch: batch) + (llama ? ";numerics=llama.cpp" : "")
      + (options.allExperts ? ";all-experts" : "")
    let writing = cache?.blocksToWrite ?? []
    var first = 0
    if readsPartials && writing.isEmpty { last = -1 }
    if let cache, let w = writing.last {
      last =
        writing.allSatisfy { cache.isCurrent(recipe: recipe, block: $0, data: fingerprint) }
        ? -1 : w
      if last < 0 {
        context.remark("the inputs of blocks \(writing) (\(recipe)) are stored already")
      }
    } else if let cache, let a = context.blocks?.range.lowerBound, a > 0 {
      if let stored = try cache.load(
        recipe: recipe, block: a, data: fingerprint, samples: windows.count, tokens: seqlen,
        width: width, budget: store.budget)
      {
        (x, first) = (stored, a)
        context.remark("read the inputs of block \(a) (\(recipe)) from \(cache.directory)")
      } else {
        context.remark(
          "no stored inputs of block \(a) (\(recipe)) in \(cache.directory): forwarding blocks 0..\(a - 1)"
        )
      }
    }
    let phase = Progress.shared.phase("calibrate: float forward, block", total: last + 1)
    defer { phase.close() }
    for (bi, f) in model.blocks.enumerated() where bi <= last && bi >= first {
      if writing.contains(bi) {
        try cache?.save(x, recipe: recipe, block: bi, data: fingerprint)
        if bi == last { break }
      }
      phase.step(bi, "\(windows.count) windows of \(seqlen) tokens")
      let exec = try BlockExecutor(function: f, module: module)
      // llama.cpp's forward: f16 KV cache, ggml's RoPE angles and arithmetic.
      exec.keyValueF16 = llama
      exec.ggmlRope = llama
      exec.ggmlArithmetic = llama
      exec.ggmlInterleavedQK = LlamaImatrixOrder.interleavedQK(module)
      exec.dispatchAllTokens = options.allExperts
      let momentum = Float(options.momentum)
      exec.linearInputHook = { name, p, rows, cols in
        if llama { _ = llamaOrder.add(name, p, rows: rows, columns: cols) }
        var s = parts[part][name] ?? .init(columns: cols)
        // One observation per calibration window, so the moving average does not depend on
        // how many windows run together.
        var r0 = 0
        while r0 < rows {
          let n = min(seqlen, rows - r0)
          s.observe(window: p + r0 * cols, rows: n, cols: cols, momentum: momentum)
          r0 += n
        }
        parts[part][name] = s
        if keep.contains(name), keepError == nil {
          let rowsStore =
            kept[name] ?? ActivationStore(tokens: seqlen, width: cols, budget: store.budget)
          do { try rowsStore.append(p, samples: rows / seqlen) } catch { keepError = error }
          kept[name] = rowsStore
        }
      }
      // The last block's outputs are not needed.
      let next =
        bi < last
        ? ActivationStore(tokens: seqlen, width: width, budget: store.budget) : nil
      var s0 = 0
      while s0 < x.samples {
        BLAS.adapt()  // the free cores, re-measured between batches
        // A batch never crosses a shard's end (one shard: all windows).
        let g = active.lowerBound + s0
        part = shards.shard(of: g)
        let b = min(batch, x.samples - s0, shards.range(part).upperBound - g)
        try buffer.withUnsafeMutableBufferPointer { xp in
          try x.read(s0..<(s0 + b), into: xp.baseAddress!)  // safe: non-empty
          let y = exec.forward(xp.baseAddress!, samples: b, tokens: seqlen)  // safe: as above
          try next?.append(y, samples: b)
        }
        s0 += b
      }
      if let next { x = next }
      if let keepError { throw keepError }
    }
    if readsPartials {
      parts = [
        try shards.load(dir: options.partials, data: fingerprint, momentum: Float(options.momentum))
      ]
      context.remark(
        "added the partial statistics of \(shards.count) data shards from \(options.partials)")
    } else if options.shard >= 0 {
      parts = [parts[options.shard]]
      try shards.save(parts[0], shard: options.shard, dir: options.partials, data: fingerprint)
      context.remark(
        "wrote the partial statistics of shard \(options.shard) (windows \(active.lowerBound)..<\(active.upperBound)) to \(CalibrationShards.path(options.partials, options.shard, of: shards.count))"
      )
    }
    stats = CalibrationShards.add(parts, momentum: Float(options.momentum))
    if let cache, last >= 0, !writing.isEmpty {
      context.remark("stored the inputs of blocks \(writing) (\(recipe)) in \(cache.directory)")
    }
    // llama.cpp's importance matrix is the per-column sum of x² before it becomes a mean.
    for (name, s) in stats.sorted(by: { $0.key < $1.key }) {
      let sums = ImportanceStats(
        columns: s.meanSquare.count, sumSquares: llamaOrder.sums(name) ?? s.meanSquare,
        tokens: [s.tokens])
      context.setImportance(name, sums)
    }
    for k in stats.keys { stats[k]!.finish() }  // safe: iterating existing keys
    reportExpertTokens(module, stats, allExperts: options.allExperts, context: context)
  }

  context.setModuleAttribute("calib.data_hash", .string(hash))
  context.setModuleAttribute("calib.samples", .int(windows.count))
  context.setModuleAttribute("calib.seqlen", .int(seqlen))
  context.setModuleAttribute("calib.seed", .int(options.seed))
  context.analyses.set(
    CalibrationAnalysis.self,
    CalibrationData(
      windows: windows, seqlen: seqlen, blockInputs: store, linearStats: stats, linearInputs: kept,
      fingerprint: fingerprint, shards: shards, shard: options.shard, partials: options.partials))
  context.remark(
    "\(windows.count) windows of \(seqlen) tokens from \(source)\(store.spilled > 0 ? ", \(store.spilled) spilled to a temporary file" : "")"
  )
}

/// Options of `calibrate`.
struct CalibrateOptions: PassOptions {
  var data = ""
  var samples = 32
  var seqlen = 256
  var seed = -1
  var windows = Windowing.spread
  var numerics = Numerics.qopt
  var stats = true
  var memoryBudgetMB = 1024
  var momentum = 0.9
  var allowLongContext = false
  var keepInputs: [String] = []
  var allExperts = false
  var dataShards = 1
  var shard = -1
  var partials = ""

  /// Where the windows come from in the token stream.
  enum Windowing: String, CaseIterable, Sendable { case spread, consecutive }
  /// Whose arithmetic the float forward follows where implementations differ.
  enum Numerics: String, CaseIterable, Sendable { case qopt, llamaCpp = "llama.cpp" }

  init() {}
  static let schema: [OptionField<CalibrateOptions>] = [
    .string(
      "data", \.data,
      "text file, or .json token ids (a flat list, or a list of windows); empty: the built-in English text"
    ),
    .int("samples", \.samples, "number of windows", in: 1...1_000_000),
    .int("seqlen", \.seqlen, "tokens per window", in: 2...1_000_000),
    .choice(
      "windows", \.windows,
      "spread: samples windows spread over the text (see seed); consecutive: llama-imatrix's"
        + " chunks, one after another from the start (BOS first in each when the tokenizer adds"
        + " one; at least 2·seqlen tokens)"),
    .choice(
      "numerics", \.numerics,
      "llama.cpp: the forward computes as llama.cpp's CPU backend (f16 KV cache, ggml's RoPE"
        + " angles, tinyBLAS products, RMS norm, SiLU and flash attention) and the sums of x²"
        + " add up in llama-imatrix's order (qopt imatrix uses it to match llama-imatrix)"),
    .int(
      "seed", \.seed,
      "-1: evenly spaced windows (offset i·⌊tokens/samples⌋); otherwise random offsets from this seed",
      in: -1...Int.max),
    .bool(
      "stats", \.stats,
      "collect per-linear input statistics (one float forward over the calibration data)"),
    .int(
      "memory-budget", \.memoryBudgetMB,
      "MiB of cached activations kept in memory (calibrate's block inputs and outputs, autoround's targets and quantized inputs, together); the rest spills to a temporary file read back a sample at a time",
      in: 0...1_048_576),
    .double(
      "momentum", \.momentum,
      "moving-average weight of the old activation range per window (optimum-quanto: 0.9)",
      in: 0...1),
    .bool(
      "allow-long-context", \.allowLongContext,
      "allow seqlen above the model's max_position_embeddings (for rope scaling that supports it)"),
    .bool(
      "all-experts", \.allExperts,
      "MoE: send every calibration token to every expert for the statistics (llm-compressor's calibrate_all_experts); the blocks' outputs still follow the router"
    ),
    .int(
      "data-shards", \.dataShards,
      "statistics as this many contiguous shards of windows, each summed in window order (forward batches within the shard) and added in shard order: the same bits in one process or merged from shard=K runs (1: plain sums)",
      in: 1...1_000_000),
    .int(
      "shard", \.shard,
      "-1: every shard; K: forward only shard K's windows and write its partial statistics under partials (and gptq<float-inputs>'s Hessian sums)",
      in: -1...999_999),
    .string(
      "partials", \.partials,
      "directory of the shards' partial statistics (calibrate-shard-K-of-N.json): written with shard=K; without shard, read and added in shard order instead of forwarding"
    ),
    .list(
      "keep-inputs", \.keepInputs,
      "Linear, names or re: regexes of weights whose linears' input rows are kept for plugins (calibration_stats \"input_rows\"); they share memory-budget"
    ),
  ]
}

let calibrateDetails = """
  Tokenizes `data` with the model's tokenizer (a module without one, like the example model
  with its 256-entry vocabulary, is fed raw UTF-8 bytes) or reads token ids from a `.json`
  file: either one flat list, cut into windows, or a list of windows used as they are. Without
  `data` the pass uses a built-in public-domain English text (Sense and Sensibility, Project
  Gutenberg, compiled into the binary).

  Windows (`windows=spread`, the default): `samples` windows of `seqlen` tokens at offsets
  `i · ⌊N / samples⌋` over the N
  tokens (for 32 × 512 on calib.txt: 0, 6539, 13078, …, as auto-round's reference samples);
  with `seed ≥ 0`, at offsets drawn uniformly from a generator seeded with it. Fewer tokens
  than one window is an error; if the text is too short for `samples` windows they overlap.
  `windows=consecutive` cuts as llama-imatrix and llama-perplexity do: chunk i is tokens
  [i·seqlen, (i+1)·seqlen) of the text (after the BOS the tokenizer adds, if it adds one),
  its first token replaced by BOS when the tokenizer's `add_bos_token` is set; the first
  `samples` chunks, or as many as fit; fewer than 2·seqlen tokens is an error (as in
  llama-imatrix).

  A `seqlen` above the model's `max_position_embeddings` (module attribute; a GGUF's
  `llama.context_length`) is an error before any data is read, unless `allow-long-context`
  is set.

  Results are the `calibration` analysis (the first block's inputs, one float forward's
  per-linear input statistics) and module attributes
  `calib.data_hash` (FNV-1a 64 of the data bytes), `calib.samples`, `calib.seqlen`,
  `calib.seed`.

  Per-linear input statistics (keyed by the linear's weight name): per channel max |x| and
  mean x² (auto-round's imatrix); per tensor the min and max over all tokens and, as
  optimum-quanto calibrates, a moving average over windows (`v ← momentum·v + (1 −
  momentum)·window`, the first window sets it) of each window's min, max and max |x|; per
  token the smallest, mean and largest row max |x|. `quantize-activations<mode=static>`
  takes its scales from them.

  The same forward leaves llama.cpp's importance matrix in the module (`Module.importance`,
  printed as `importance` declarations, saved with `-o x.ir`): per linear the sum over every
  token of every window of x² per input column, and the token count, accumulated in float
  token by token as llama-imatrix does. It replaces statistics loaded with `-imatrix=FILE`.
  It is the sum the mean x² above is made from, so it costs nothing extra.
  """

/// Per-expert token counts of every MoE block (each expert's first linear's input rows), as a
/// remark, and a warning naming the experts no calibration token reached (passes quantize
/// those from their weights alone, RTN, and say so).
private func reportExpertTokens(
  _ module: Module, _ stats: [String: CalibrationData.ChannelStats], allExperts: Bool,
  context: PassContext
) {
  var counts: [String: [Int: Int]] = [:]
  for (name, m) in module.moeExpertLinears() {
    let n = stats[name]?.tokens ?? 0
    counts[m.function, default: [:]][m.expert] = max(counts[m.function]?[m.expert] ?? 0, n)
  }
  for f in module.functions where counts[f.name] != nil {
    let byExpert = counts[f.name] ?? [:]
    let list = byExpert.keys.sorted().map { "\(byExpert[$0] ?? 0)" }.joined(separator: ", ")
    context.remark("@\(f.name) expert tokens\(allExperts ? " (all-experts)" : ""): [\(list)]")
    let idle = byExpert.keys.sorted().filter { byExpert[$0] == 0 }
    if !idle.isEmpty {
      context.warning(
        "@\(f.name): experts \(idle.map(String.init).joined(separator: ", ")) received no calibration tokens; they are quantized from their weights alone (RTN)"
      )
    }
  }
}

/// FNV-1a 64-bit hash of `bytes`, as 16 hex digits.
func fnv1a64(_ bytes: [UInt8]) -> String {
  var h: UInt64 = 0xcbf2_9ce4_8422_2325
  for b in bytes {
    h ^= UInt64(b)
    h = h &* 0x0000_0100_0000_01b3
  }
  let s = String(h, radix: 16)
  return String(repeating: "0", count: 16 - s.count) + s
}

/// Reading and cutting calibration data.
package enum CalibrationText {
  /// The bytes of `path` (the built-in text when empty) and a name for messages.
  static func load(_ path: String) throws -> ([UInt8], String) {
    if path.isEmpty { return (Array(defaultCalibrationText.utf8), "<built-in calibration text>") }
    let f = try MappedFile(path: path)
    return (Array(f.all), path)
  }

  /// Token ids: JSON files parse as ids (windows flattened with a marker), text goes through
  /// the module's tokenizer, or raw bytes when the module carries none.
  static func tokens(of data: [UInt8], source: String, module: Module) throws -> Tokens {
    if source.hasSuffix(".json") {
      let json: JSON
      do { json = try JSON.parse(data) } catch {
        throw StorageError(file: source, offset: error.offset, message: error.message)
      }
      guard let items = json.arrayValue else {
        throw StorageError(
          file: source, offset: 0, message: "expected a JSON list of token ids or of windows")
      }
      if items.first?.arrayValue != nil {
        let ws = try items.enumerated().map { i, w -> [Int32] in
          guard let a = w.arrayValue else {
            throw StorageError(
              file: source, offset: nil, message: "window \(i) is not a list of token ids")
          }
          return try a.enumerated().map { j, v in
            guard let n = v.intValue, let t = Int32(exactly: n) else {
              throw StorageError(
                file: source, offset: nil, message: "window \(i), item \(j) is not a token id")
            }
            return t
          }
        }
        return .windows(ws)
      }
      return .flat(
        try items.enumerated().map { j, v in
          guard let n = v.intValue, let t = Int32(exactly: n) else {
            throw StorageError(file: source, offset: nil, message: "item \(j) is not a token id")
          }
          return t
        })
    }
    guard let text = String(validating: data, as: UTF8.self) else {
      throw StorageError(file: source, offset: nil, message: "calibration text is not valid UTF-8")
    }
    if module.tokenizerJSON != nil {
      return .flat(try Tokenizer(module: module).encode(text))
    }
    return .flat(data.map { Int32($0) })
  }

  /// llama-imatrix's chunks: consecutive `seqlen`-token chunks from the start (the first
  /// `samples`, or all that fit), after prepending `bos` and with each chunk's first token
  /// replaced by it when the tokenizer adds one (`compute_imatrix` in llama.cpp's
  /// tools/imatrix/imatrix.cpp). Given windows are used as they are.
  package static func consecutiveWindows(
    _ tokens: Tokens, samples: Int, seqlen: Int, bos: Int32?, source: String
  ) throws -> [[Int32]] {
    guard case .flat(var ids) = tokens else {
      return try windows(tokens, samples: samples, seqlen: seqlen, seed: -1, source: source)
    }
    if let bos { ids.insert(bos, at: 0) }
    guard ids.count >= 2 * seqlen else {
      throw PassError(
        "\(source) has \(ids.count) tokens; consecutive windows of seqlen=\(seqlen) need at least"
          + " \(2 * seqlen), as llama-imatrix does")
    }
    return (0..<min(samples, ids.count / seqlen)).map { i in
      var w = Array(ids[(i * seqlen)..<((i + 1) * seqlen)])
      if let bos { w[0] = bos }
      return w
    }
  }

  /// The BOS id when the module's tokenizer adds one (`add_bos_token` in its
  /// tokenizer_config.json, `bos_token_id` among the module attributes), else nil.
  static func addedBOS(of module: Module) -> Int32? {
    guard let name = module.attributes["tokenizer_config"]?.symbolValue,
      let t = module.weights.dense(name), let json = try? JSON.parse(t.bytes),
      json["add_bos_token"]?.boolValue == true,
      let id = module.attributes["bos_token_id"]?.intValue, let bos = Int32(exactly: id)
    else { return nil }
    return bos
  }

  package enum Tokens {
    case flat([Int32])
    case windows([[Int32]])
  }

  /// `samples` windows of `seqlen` tokens: evenly spaced (offset i·⌊N/samples⌋, clamped so the
  /// window fits) or, with `seed ≥ 0`, at random offsets. Given windows are used as they are
  /// (the first `samples`, each cut to `seqlen`).
  package static func windows(
    _ tokens: Tokens, samples: Int, seqlen: Int, seed: Int, source: String
  ) throws -> [[Int32]] {
    switch tokens {
    case .windows(let ws):
      let short = ws.prefix(samples).firstIndex { $0.count < seqlen }
      if let short {
        throw PassError(
          "window \(short) of \(source) has \(ws[short].count) tokens, fewer than seqlen=\(seqlen)")
      }
      return ws.prefix(samples).map { Array($0.prefix(seqlen)) }
    case .flat(let ids):
      guard ids.count >= seqlen else {
        throw PassError(
          "\(source) has \(ids.count) tokens, fewer than one window of seqlen=\(seqlen)")
      }
      let last = ids.count - seqlen
      var rng = SplitMix64(seed: UInt64(max(seed, 0)))
      return (0..<samples).map { i in
        let o = seed < 0 ? min(i * (ids.count / samples), last) : Int(rng.next() % UInt64(last + 1))
        return Array(ids[o..<(o + seqlen)])
      }
    }
  }
}

/// SplitMix64: a small, fast, fully specified generator (the same sequence on every platform,
/// so seeds reproduce across machines).
struct SplitMix64 {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
