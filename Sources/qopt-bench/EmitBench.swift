import QoptBackends
import QoptFormats
import QoptIR
import QoptPasses

#if canImport(Glibc)
  import Glibc
#endif

/// Backend benchmark: prints a table of emit timings and peak memory.
///
/// 1. Emit from a synthetic module shaped like SmolLM2-135M (30 blocks, hidden 576, ffn 1536,
///    vocab 49152, tied embeddings, f32 weights in memory): GGUF q4_0 / q8_0 / f16 from float
///    weights, GGUF from `rtn` int4 g32 weights (packed exactly), compressed-tensors W4A16 g64.
/// 2. Streaming: a ≥ 1 GB f32 `.ir` + sidecar checkpoint written to a temporary directory,
///    emitted by a child `qopt` process to GGUF q8_0 and to compressed-tensors; the child's
///    peak RSS (from `wait4`) must stay well under the checkpoint size.
/// 3. End to end, when `importer` is given (the lead passes the GGUF importer):
///    `qopt MODEL.gguf -emit=gguf:q4_0` and `-passes=rtn<…> -emit=compressed-tensors`, timed
///    as child processes of the `qopt` binary built beside this one.
///
/// `scratch` is where outputs go (deleted afterwards); `model` the shared GGUF.
public func runEmitBench(
  scratch: String = "/tmp/qopt-emit-bench",
  model: String = "../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf",
  streamingBytes: Int = 1_150_000_000, threads: Int = 2
) {
  removeTree(scratch)
  mkdir(scratch, 0o755)
  defer { removeTree(scratch) }
  var rows: [(String, Double, Double?, String)] = []
  func row(_ work: String, _ wall: Double, rss: Double? = nil, _ note: String = "") {
    rows.append((work, wall, rss, note))
    print(
      "  \(work): \(emitBenchFormat(wall, 3)) s"
        + (rss.map { ", peak RSS \(emitBenchFormat($0, 0)) MiB" } ?? "")
        + (note.isEmpty ? "" : ", " + note))
  }
  defer {
    print("\n| work | wall (s) | peak RSS (MiB) | note |\n|---|---|---|---|")
    for (w, t, r, n) in rows {
      print(
        "| \(w) | \(emitBenchFormat(t, 3)) | \(r.map { emitBenchFormat($0, 0) } ?? "") | \(n) |")
    }
  }
  print("emit benchmark (release build, \(threads) threads)")

  // MARK: 1. in-process emit on a 135M-shaped module
  var t = emitBenchClock()
  let m = emitBenchSyntheticSmolLM2()
  let params = 134_515_008
  print("  (built synthetic 135M-shaped module in \(emitBenchFormat(emitBenchClock() - t, 2)) s)")
  for type in [GGMLType.q4_0, .q8_0, .f16] {
    t = emitBenchClock()
    do {
      try GGUFEmitter(types: GGUFTypeSelection(defaultType: type), threads: threads).emit(
        m, to: scratch + "/m.gguf")
      let dt = emitBenchClock() - t
      row(
        "emit gguf:\(type.name), 135M float weights", dt,
        "\(emitBenchFormat(Double(params) / dt / 1e6, 0)) Mparam/s")
    } catch { print("  gguf:\(type.name) failed: \(error)") }
  }
  t = emitBenchClock()
  let q4 = m.copyForBench()
  emitBenchQuantizeLinears(
    q4, IntScheme(bits: 4, symmetric: true, granularity: .group(32), scaleType: .f16), .fullRange,
    threads: threads)
  row("rtn int4 g32 full-range (IntQuantizer, 210 linears)", emitBenchClock() - t)
  t = emitBenchClock()
  do {
    try GGUFEmitter(threads: threads).emit(q4, to: scratch + "/q.gguf")
    row("emit gguf (auto: rtn int4 g32 packed exactly as q4_0)", emitBenchClock() - t)
  } catch { print("  gguf exact failed: \(error)") }
  t = emitBenchClock()
  let w4 = m.copyForBench()
  emitBenchQuantizeLinears(
    w4, IntScheme(bits: 4, symmetric: true, granularity: .group(64), scaleType: .f32), .minmax,
    threads: threads)
  row("rtn int4 g64 minmax (W4A16)", emitBenchClock() - t)
  t = emitBenchClock()
  do {
    try CompressedTensorsEmitter().emit(w4, to: scratch + "/ct")
    row("emit compressed-tensors W4A16 g64", emitBenchClock() - t)
  } catch { print("  compressed-tensors failed: \(error)") }

  // MARK: 2. streaming from a ≥ 1 GB memory-mapped checkpoint, in a child qopt
  let qopt = emitBenchExecutableDirectory() + "/qopt"
  t = emitBenchClock()
  do {
    let ir = try emitBenchWriteLargeCheckpoint(scratch + "/big", bytes: streamingBytes)
    print(
      "  (wrote \(emitBenchFormat(Double(streamingBytes) / 1e9, 2)) GB f32 checkpoint in \(emitBenchFormat(emitBenchClock() - t, 1)) s)"
    )
    for (label, args) in [
      ("gguf:q8_0", [ir, "-emit=gguf:q8_0", "-o", scratch + "/big.gguf"]),
      (
        "compressed-tensors",
        [ir, "-emit=compressed-tensors", "-max-shard-size=500MB", "-o", scratch + "/big-ct"]
      ),
    ] {
      let r = emitBenchRun(qopt, args)
      row(
        "stream \(emitBenchFormat(Double(streamingBytes) / 1e9, 2)) GB f32 checkpoint → \(label)",
        r.wall, rss: r.rssMiB,
        r.status == 0
          ? "peak RSS \(emitBenchFormat(r.rssMiB * 1_048_576 / Double(streamingBytes) * 100, 0))% of checkpoint"
          : "FAILED (status \(r.status))")
      removeTree(scratch + "/big.gguf")
      removeTree(scratch + "/big-ct")
    }
  } catch { print("  streaming check failed: \(error)") }
  removeTree(scratch + "/big.ir")
  removeTree(scratch + "/big.safetensors")

  // MARK: 3. end to end through the qopt binary (needs the GGUF importer in loadInput)
  if fileExists(model) {
    for (label, args) in [
      (
        "qopt MODEL.gguf -emit=gguf:q4_0 -gguf-pure",
        [
          model, "-emit=gguf:q4_0", "-gguf-pure", "-threads=\(threads)", "-o",
          scratch + "/e2e.gguf",
        ]
      ),
      (
        "qopt MODEL.gguf -emit=gguf:q8_0",
        [model, "-emit=gguf:q8_0", "-threads=\(threads)", "-o", scratch + "/e2e8.gguf"]
      ),
      (
        "qopt -passes=rtn<4,g64,minmax> MODEL.gguf -emit=compressed-tensors",
        [
          "-passes=rtn<bits=4;group-size=64;scale-rule=minmax>", model, "-emit=compressed-tensors",
          "-threads=\(threads)", "-o", scratch + "/e2e-ct",
        ]
      ),
    ] {
      // Three runs, the median reported. Before each, earlier writes are flushed and the
      // previous output removed: their writeback and eviction would otherwise run during the
      // timed child and be charged to it.
      var runs: [EmitBenchChild] = []
      for _ in 0..<3 {
        removeTree(args[args.count - 1])
        sync()
        runs.append(emitBenchRun(qopt, args))
      }
      let r = runs.sorted { $0.wall < $1.wall }[1]
      let walls = runs.map { emitBenchFormat($0.wall, 3) }.joined(separator: " / ")
      row(
        "end to end: \(label)", r.wall, rss: runs.map(\.rssMiB).max() ?? r.rssMiB,
        runs.allSatisfy { $0.status == 0 }
          ? "median of \(walls)" : "FAILED (status \(r.status); importer wired?)")
    }
  } else {
    print("  end to end: \(model) not found (run from the repository root)")
  }
}

// MARK: - Synthetic model

/// SmolLM2-135M's shapes with pseudo-random f32 weights (HF names, config attributes, ops).
private func emitBenchSyntheticSmolLM2() -> Module {
  let (hidden, heads, kv, ffn, layers, vocab) = (576, 9, 3, 1536, 30, 49152)
  let m = Module(name: "synthetic_smollm2")
  for (k, v) in [
    ("hidden_size", hidden), ("num_attention_heads", heads), ("num_key_value_heads", kv),
    ("intermediate_size", ffn),
    ("num_hidden_layers", layers), ("vocab_size", vocab), ("max_position_embeddings", 8192),
    ("head_dim", 64),
  ] {
    m.attributes[k] = .int(v)
  }
  m.attributes["model_type"] = .string("llama")
  m.attributes["rms_norm_eps"] = .float(1e-5)
  m.attributes["rope_theta"] = .float(100000)
  m.attributes["tie_word_embeddings"] = .bool(true)
  var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
  func add(_ name: String, _ shape: [Int], norm: Bool = false) {
    let n = shape.reduce(1, *)
    let t = TensorData.build(dtype: .f32, shape: shape) { raw in
      let f = raw.bindMemory(to: Float.self)
      for i in 0..<n {
        seed = seed &* 6364136223846793005 &+ 1442695040888963407
        let u = Float(seed >> 40) / Float(1 << 24) - 0.5
        f[i] = norm ? 1 + u / 8 : u * 0.1
      }
    }
    m.weights.set(name, .dense(t))
  }
  add("model.embed_tokens.weight", [vocab, hidden])
  let f = Function(
    name: "main", arguments: [Value(name: "ids", type: TensorType([nil], .i32))],
    resultType: TensorType([nil, vocab], .f32))
  m.append(f)
  var b = Builder(atEndOf: f)
  var x = b.op(
    .embedding,
    [f.arguments[0], b.param("model.embed_tokens.weight", TensorType([vocab, hidden], .f32))],
    TensorType([nil, hidden], .f32))
  for l in 0..<layers {
    let p = "model.layers.\(l)."
    add(p + "input_layernorm.weight", [hidden], norm: true)
    add(p + "post_attention_layernorm.weight", [hidden], norm: true)
    for (n, s) in [
      ("self_attn.q_proj", [heads * 64, hidden]), ("self_attn.k_proj", [kv * 64, hidden]),
      ("self_attn.v_proj", [kv * 64, hidden]),
      ("self_attn.o_proj", [hidden, heads * 64]), ("mlp.gate_proj", [ffn, hidden]),
      ("mlp.up_proj", [ffn, hidden]),
      ("mlp.down_proj", [hidden, ffn]),
    ] {
      add(p + n + ".weight", s)
      let w = b.param(p + n + ".weight", TensorType(s.map { $0 }, .f32))
      x = b.op(.linear, [x, w], TensorType([nil, s[0]], .f32))
    }
  }
  add("model.norm.weight", [hidden], norm: true)
  let head = b.param("model.embed_tokens.weight", TensorType([vocab, hidden], .f32))
  b.ret(b.op(.linear, [x, head], TensorType([nil, vocab], .f32)))
  return m
}

extension Module {
  /// A module sharing functions and (immutable) tensor data, with its own weight store.
  fileprivate func copyForBench() -> Module {
    let store = WeightStore()
    for n in weights.names { if let e = weights[n] { store.set(n, e) } }
    let c = Module(name: name, attributes: attributes, weights: store)
    for f in functions { c.append(f) }
    return c
  }
}

private func emitBenchQuantizeLinears(_ m: Module, _ s: IntScheme, _ rule: ScaleRule, threads: Int)
{
  for n in m.weights.names where n.hasSuffix("_proj.weight") {
    guard let w = m.weights.dense(n) else { continue }
    let floats = w.floats()
    let q = floats.withUnsafeBufferPointer {
      IntQuantizer(scheme: s, rule: rule).quantize(
        $0, rows: w.shape[0], cols: w.shape[1], threads: threads)
    }
    m.weights.set(n, .quantized(q))
  }
}

// MARK: - Large checkpoint for the streaming check

/// Writes `dir.ir` + `dir.safetensors`: a llama-shaped f32 model of about `bytes` bytes,
/// generated tensor by tensor (never whole in memory), and returns the `.ir` path.
private func emitBenchWriteLargeCheckpoint(_ base: String, bytes: Int) throws -> String {
  let (hidden, ffn, vocab) = (1024, 4096, 32768)
  let perLayer = (4 * hidden * hidden + 3 * hidden * ffn + 2 * hidden) * 4
  let layers = max(1, (bytes - 2 * vocab * hidden * 4) / perLayer + 1)
  var shapes: [(String, [Int])] = [
    ("model.embed_tokens.weight", [vocab, hidden]), ("model.norm.weight", [hidden]),
    ("lm_head.weight", [vocab, hidden]),
  ]
  for l in 0..<layers {
    let p = "model.layers.\(l)."
    shapes += [
      (p + "input_layernorm.weight", [hidden]), (p + "post_attention_layernorm.weight", [hidden]),
    ]
    for n in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"] {
      shapes.append((p + n + ".weight", [hidden, hidden]))
    }
    shapes += [
      (p + "mlp.gate_proj.weight", [ffn, hidden]), (p + "mlp.up_proj.weight", [ffn, hidden]),
      (p + "mlp.down_proj.weight", [hidden, ffn]),
    ]
  }
  let entries = shapes.enumerated().map { (i, s) in
    SafetensorsEntry(name: s.0, dtype: .f32, shape: s.1) {
      TensorData.build(dtype: .f32, shape: s.1) { raw in
        let f = raw.bindMemory(to: Float.self)
        var x = UInt32(truncatingIfNeeded: i &* 2654435761 &+ 1)
        for k in 0..<f.count {
          x = x &* 1664525 &+ 1013904223
          f[k] = s.1.count == 1 ? 1 : Float(Int32(bitPattern: x) >> 8) / Float(1 << 23) * 0.05
        }
      }
    }
  }
  try SafetensorsWriter.write(entries, metadata: [("format", "pt")], to: base + ".safetensors")
  let file = try SafetensorsFile(path: base + ".safetensors")
  let store = WeightStore()
  for (n, d) in file.tensors { store.set(n, .dense(d)) }
  let m = Module(name: "big", weights: store)
  for (k, v) in [
    ("hidden_size", hidden), ("num_attention_heads", 16), ("num_key_value_heads", 16),
    ("intermediate_size", ffn),
    ("num_hidden_layers", layers), ("vocab_size", vocab), ("max_position_embeddings", 4096),
  ] {
    m.attributes[k] = .int(v)
  }
  m.attributes["rms_norm_eps"] = .float(1e-5)
  let f = Function(
    name: "main", arguments: [Value(name: "x", type: TensorType([nil, hidden], .f32))],
    resultType: TensorType([nil, hidden], .f32))
  m.append(f)
  var b = Builder(atEndOf: f)
  for (n, s) in shapes { _ = b.param(n, TensorType(s.map { $0 }, .f32)) }
  b.ret(f.arguments[0])
  // Every weight lives in the sidecar just written (norms too: no inline weights).
  let text = Printer(inlineWeightLimit: 0).print(m)
  let out = try AtomicFileWriter(path: base + ".ir")
  try out.write(text)
  try out.commit()
  return base + ".ir"
}

// MARK: - Processes, clocks, files

struct EmitBenchChild {
  var status: Int32
  var wall: Double
  var rssMiB: Double
  /// User + system CPU seconds of the child.
  var cpu: Double = 0
}

/// Runs `exe args` under `/usr/bin/time` and returns its exit status, wall time and peak RSS.
///
/// Not `wait4`'s own ru_maxrss: a child spawned with vfork semantics inherits the parent's
/// high-water mark at exec (this process holds the 135M-shaped module), so the figure comes
/// from `time`, whose own children start from its small footprint.
func emitBenchRun(_ exe: String, _ args: [String]) -> EmitBenchChild {
  let rssFile = "/tmp/qopt-emit-bench-rss-\(getpid())"
  defer { unlink(rssFile) }
  let hasTime = fileExists("/usr/bin/time")
  let full = hasTime ? ["/usr/bin/time", "-f", "%M", "-o", rssFile, exe] + args : [exe] + args
  let argv: [UnsafeMutablePointer<CChar>?] = full.map { strdup($0) } + [nil]
  defer { for p in argv { free(p) } }
  var pid: pid_t = 0
  let t = emitBenchClock()
  guard posix_spawn(&pid, full[0], nil, nil, argv, environ) == 0 else {
    return EmitBenchChild(status: -1, wall: 0, rssMiB: 0)
  }
  var status: Int32 = 0
  var ru = rusage()
  wait4(pid, &status, 0, &ru)
  let wall = emitBenchClock() - t
  let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
  var kib = Double(ru.ru_maxrss)
  if hasTime, let b = try? readFile(rssFile) {
    let text = String(decoding: b, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
    kib = Double(text.trimmingCharacters()) ?? kib
  }
  let cpu =
    Double(ru.ru_utime.tv_sec) + Double(ru.ru_utime.tv_usec) / 1e6 + Double(ru.ru_stime.tv_sec)
    + Double(ru.ru_stime.tv_usec) / 1e6
  return EmitBenchChild(status: code, wall: wall, rssMiB: kib / 1024, cpu: cpu)
}

extension String {
  fileprivate func trimmingCharacters() -> String { String(filter { !$0.isWhitespace }) }
}

/// `x` with `digits` decimals (no Foundation).
func emitBenchFormat(_ x: Double, _ digits: Int) -> String {
  var p = 1.0
  for _ in 0..<digits { p *= 10 }
  let v = (x * p).rounded() / p
  var s = "\(v)"
  if digits == 0, s.hasSuffix(".0") { s.removeLast(2) }
  if let dot = s.firstIndex(of: "."), digits > 0 {
    let frac = s.distance(from: dot, to: s.endIndex) - 1
    if frac < digits { s += String(repeating: "0", count: digits - frac) }
  }
  return s
}

func emitBenchClock() -> Double {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func emitBenchExecutableDirectory() -> String {
  var buf = [CChar](repeating: 0, count: 4096)
  let n = readlink("/proc/self/exe", &buf, buf.count - 1)
  guard n > 0 else { return "." }
  let path = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
  return parentDirectory(of: path)
}
