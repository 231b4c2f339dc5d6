import ArgumentParser
import QoptFormats
import QoptFrontends
import QoptIR
import QoptPasses
import QoptPluginHost
import QoptRuntime

#if canImport(Glibc)
  import Glibc
#endif

/// `qopt eval MODEL -data FILE`: perplexity by the anchors.md protocol.
struct EvalCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "eval",
    abstract: "Perplexity of a model over a text file or a JSON token-id file.",
    discussion: """
      Non-overlapping windows of -seqlen tokens, the first -windows of them, no BOS; each window
      predicts its tokens 1…seqlen−1 from its own prefix; ppl = exp(mean NLL). A -seqlen above
      the model's max_position_embeddings is an error unless -allow-long-context is given.
      """,
    helpNames: [.customLong("help", withSingleDash: true), .short, .long])

  @Argument(help: "The model: an .ir file, a checkpoint directory or a .gguf file.")
  var model: String

  @Option(
    name: .customLong("data", withSingleDash: true),
    help: "Text (tokenized with the model's tokenizer) or a .json array of token ids.")
  var data: String

  @Option(name: .customLong("seqlen", withSingleDash: true), help: "Tokens per window.")
  var seqlen: Int = 512

  @Option(
    name: .customLong("windows", withSingleDash: true),
    help: "How many windows to evaluate (from the start).")
  var windows: Int = 40

  @Option(
    name: .customLong("load-pass-plugin", withSingleDash: true),
    help: "Load a pass plugin first, so its external kernels can run (repeatable).")
  var loadPassPlugin: [String] = []

  @Flag(
    name: .customLong("allow-long-context", withSingleDash: true),
    help:
      "Allow -seqlen above the model's max_position_embeddings (for rope scaling that supports it)."
  )
  var allowLongContext = false

  @Option(
    name: .customLong("kl-base", withSingleDash: true),
    help: ArgumentHelp(
      "A base (float) model: also report the KL divergence of MODEL's next-token distributions from its, and top-1 agreement (llama-perplexity --kl-divergence).",
      valueName: "FLOAT_MODEL"))
  var klBase: String?

  @Flag(name: .customLong("json", withSingleDash: true), help: "Print one JSON object on stdout.")
  var json = false

  @Option(name: .customLong("threads", withSingleDash: true), help: ThreadsOption.help)
  var threadsOption: Int?
  var threads: Int { threadsOption ?? defaultThreads() }

  func validate() throws {
    if seqlen < 2 { throw ValidationError("-seqlen must be at least 2, found \(seqlen)") }
    if windows < 1 { throw ValidationError("-windows must be at least 1, found \(windows)") }
    if threads < 1 || threads > 1024 {
      throw ValidationError("-threads must be in 1...1024, found \(threads)")
    }
  }

  func run() throws {
    try PluginLoader.loadAll(loadPassPlugin, into: PassRegistry.builtin())
    ThreadsOption.apply(threadsOption)
    let module = try loadInput(path: model)
    try module.verify()
    if !allowLongContext,
      let problem = ContextLength.problem(
        seqlen: seqlen, module: module, override: "-allow-long-context")
    {
      throw RuntimeError("eval: \(problem)")
    }
    let ids = try EvalData.tokenIds(path: data, module: module)
    let interpreter = Self.interpreter(module)
    if let klBase {
      let base = try loadInput(path: klBase)
      try base.verify()
      return try runKL(interpreter, base: Self.interpreter(base), ids: ids)
    }
    let result = try withWindowProgress { step in
      try Perplexity.evaluate(
        interpreter, ids: ids, seqlen: seqlen, windows: windows, progress: step)
    }
    let rss = peakRSSMegabytes()
    if json {
      let obj: JSON = .object([
        ("ppl", .double(result.ppl)), ("mean_nll", .double(result.meanNLL)),
        ("predicted_tokens", .int(result.predictedTokens)), ("windows", .int(result.windows)),
        ("seqlen", .int(result.seqlen)), ("tokens_per_s", .double(result.tokensPerSecond)),
        ("peak_rss_mb", .double(rss)),
      ])
      print(obj.serialized)
    } else {
      print("perplexity: \(result.ppl)")
      print("mean nll: \(result.meanNLL)")
      print(
        "predicted tokens: \(result.predictedTokens) (\(result.windows) windows of \(result.seqlen))"
      )
      print("tokens/s: \(result.tokensPerSecond)")
      print("peak rss: \(Int(rss.rounded())) MiB")
    }
  }

  /// A quantized model is dequantized once and kept (one f32 copy, as a float model holds)
  /// instead of once per window.
  static func interpreter(_ module: Module) -> Interpreter {
    let quantized = module.weights.names.contains { module.weights.quantized($0) != nil }
    return Interpreter(module: module, policy: quantized ? .keepAll : .perUse)
  }

  /// Runs `body` with a per-window progress callback: a status line with ETA on a terminal,
  /// closed before the result lines print.
  func withWindowProgress<T>(
    _ body: (_ step: @escaping (Int, Int) -> Void) throws -> T
  ) rethrows
    -> T
  {
    var phase: Progress.Phase?
    let result = try body { done, total in
      if phase == nil { phase = Progress.shared.phase("eval: window", total: total) }
      phase?.step(done)
    }
    phase?.close()
    return result
  }

  /// `-kl-base`: perplexity and KL divergence in one pass over the windows.
  func runKL(_ interpreter: Interpreter, base: Interpreter, ids: [Int32]) throws {
    let r = try withWindowProgress { step in
      try KLDivergence.evaluate(
        interpreter, base: base, ids: ids, seqlen: seqlen, windows: windows, progress: step)
    }
    let rss = peakRSSMegabytes()
    if json {
      let obj: JSON = .object([
        ("ppl", .double(r.ppl)), ("base_ppl", .double(r.basePPL)), ("mean_kl", .double(r.meanKL)),
        ("median_kl", .double(r.medianKL)), ("p99_kl", .double(r.p99KL)),
        ("max_kl", .double(r.maxKL)), ("top1_agreement", .double(r.top1Agreement)),
        ("predicted_tokens", .int(r.predictedTokens)), ("windows", .int(r.windows)),
        ("seqlen", .int(r.seqlen)), ("peak_rss_mb", .double(rss)),
      ])
      print(obj.serialized)
    } else {
      print("perplexity: \(r.ppl)")
      print("base perplexity: \(r.basePPL)")
      print("mean kl: \(r.meanKL)")
      print("median kl: \(r.medianKL)")
      print("p99 kl: \(r.p99KL)")
      print("max kl: \(r.maxKL)")
      print("top-1 agreement: \(r.top1Agreement * 100) %")
      print("predicted tokens: \(r.predictedTokens) (\(r.windows) windows of \(r.seqlen))")
      print("peak rss: \(Int(rss.rounded())) MiB")
    }
  }
}

/// Token ids for evaluation: a JSON array of ints, or text encoded with the model's tokenizer.
enum EvalData {
  static func tokenIds(path: String, module: Module) throws -> [Int32] {
    let bytes = try readFile(path)
    if path.hasSuffix(".json") {
      let j: JSON
      do { j = try JSON.parse(bytes) } catch {
        throw StorageError(
          file: path, offset: error.offset, message: "not valid JSON: \(error.message)")
      }
      guard let arr = j.arrayValue ?? j["input_ids"]?.arrayValue ?? j["ids"]?.arrayValue else {
        throw StorageError(file: path, offset: 0, message: "expected a JSON array of token ids")
      }
      var out: [Int32] = []
      out.reserveCapacity(arr.count)
      for (i, v) in arr.enumerated() {
        guard let n = v.intValue, n >= 0, n <= Int(Int32.max) else {
          throw StorageError(file: path, offset: nil, message: "entry \(i) is not a token id")
        }
        out.append(Int32(n))
      }
      return out
    }
    guard let text = String(validating: bytes, as: UTF8.self) else {
      throw StorageError(
        file: path, offset: nil, message: "data file is neither .json nor UTF-8 text")
    }
    return try Tokenizer(module: module).encode(text)
  }
}
