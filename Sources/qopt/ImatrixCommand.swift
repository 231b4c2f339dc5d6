import ArgumentParser
import QoptFormats
import QoptIR
import QoptPasses

/// `qopt imatrix MODEL -data TEXT -o FILE`: llama.cpp's importance matrix, computed as
/// llama-imatrix computes it, written in its file formats.
struct ImatrixCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "imatrix",
    abstract: "Compute llama.cpp's importance matrix (as llama-imatrix does) and write it.",
    discussion: """
      What llama-imatrix (llama.cpp 0.3.36's tools/imatrix) computes, with the same windowing:
      the text is tokenized with the model's tokenizer (a BOS first only if the tokenizer's
      add_bos_token says so) and cut into consecutive -seqlen-token chunks from the start, the
      first -chunks of them (all that fit without -chunks; at least 2 × -seqlen tokens are
      needed). When add_bos_token is set, each chunk's first token is replaced by BOS. The
      float model runs each chunk as one causal sequence with llama.cpp's CPU arithmetic
      (keys and values rounded to f16 as its default KV cache holds them, ggml's RoPE angles,
      tinyBLAS matrix products, RMS norm, SiLU and tiled flash attention), and for every
      linear of every block (not the output head, llama-imatrix's default without
      --process-output) the sum over ALL tokens of each chunk of x² per input column is
      accumulated in llama-imatrix's order (4 chunks of 512 per batch, ubatches taking 128
      tokens of each), with the token count. On SmolLM2 with -seqlen 512 the file's sums are
      llama-imatrix's (x86-64 llama.cpp with AVX2/FMA) bit for bit.

      -o FILE: llama.cpp's GGUF imatrix format (tensors NAME.in_sum2 and NAME.counts, keys
      imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size), or the legacy format when
      FILE ends in .dat. Names are llama.cpp's (blk.0.attn_q.weight). llama-quantize
      --imatrix reads both; qopt -imatrix=FILE reads them back into a module.
      """,
    helpNames: [.customLong("help", withSingleDash: true), .short, .long])

  @Argument(help: "The model: an .ir file, a checkpoint directory or a .gguf file.")
  var model: String

  @Option(name: .customLong("data", withSingleDash: true), help: "The text to run (UTF-8).")
  var data: String?

  @Option(
    name: .customLong("in-file", withSingleDash: true),
    help:
      "An imatrix file (GGUF or .dat) to add in, as llama-imatrix --in-file (repeatable); without -data the files are only combined and rewritten."
  )
  var inFiles: [String] = []

  @Option(
    name: .customLong("seqlen", withSingleDash: true), help: "Tokens per chunk (llama-imatrix -c).")
  var seqlen: Int = 512

  @Option(
    name: .customLong("chunks", withSingleDash: true),
    help: "Use at most this many chunks (llama-imatrix --chunks); default: all.")
  var chunks: Int?

  @Option(name: .customShort("o"), help: "Output file: .dat for the legacy format, GGUF otherwise.")
  var output: String = "imatrix.gguf"

  @Option(name: .customLong("threads", withSingleDash: true), help: ThreadsOption.help)
  var threadsOption: Int?
  var threads: Int { threadsOption ?? defaultThreads() }

  @Flag(name: .customLong("quiet", withSingleDash: true), help: "No progress lines on stderr.")
  var quiet = false

  func validate() throws {
    if data == nil && inFiles.isEmpty {
      throw ValidationError("give -data TEXT, -in-file FILE, or both")
    }
    if seqlen < 2 { throw ValidationError("-seqlen must be at least 2, found \(seqlen)") }
    if let chunks, chunks < 1 {
      throw ValidationError("-chunks must be at least 1, found \(chunks)")
    }
    if threads < 1 || threads > 1024 {
      throw ValidationError("-threads must be in 1...1024, found \(threads)")
    }
  }

  func run() throws {
    if quiet { Progress.shared.style = .quiet }
    ThreadsOption.apply(threadsOption)
    var combined = ImatrixFile(entries: [:], datasets: [], chunkCount: 0, chunkSize: 0)
    for path in inFiles { try Self.add(ImatrixFile.read(path: path), to: &combined, from: path) }
    if let data {
      let module = try loadInput(path: model)
      try module.verify()
      let registry = PassRegistry.builtin()
      let samples = chunks ?? 1_000_000
      let text =
        "calibrate<data=\(data);seqlen=\(seqlen);samples=\(samples);windows=consecutive;numerics=llama.cpp>"
      let pipeline: [PassInvocation]
      do { pipeline = try PipelineParser.parse(text, registry: registry) } catch {
        throw PipelineDiagnostic(error: error, text: text)
      }
      let manager = PassManager(instrumentation: Instrumentation(), threads: threads) {
        stderrWrite($0.hasSuffix("\n") ? $0 : $0 + "\n")
      }
      try manager.run(pipeline, on: module)
      let used = module.attributes["calib.samples"]?.intValue ?? 0
      try Self.add(
        ImatrixFile(module: module, datasets: [data], chunkCount: used, chunkSize: seqlen),
        to: &combined, from: data)
    }
    try combined.write(to: output)
    if !quiet {
      stderrWrite(
        "imatrix: \(combined.entries.count) entries, \(combined.chunkCount) chunks of \(combined.chunkSize) tokens -> \(output)\n"
      )
    }
  }

  /// Adds `file`'s sums and counts to `total` (llama-imatrix's `load_imatrix` for GGUF files:
  /// entries of the same name add up), its datasets after the earlier ones; the chunk count
  /// follows the largest token count, as llama-imatrix's does.
  static func add(_ file: ImatrixFile, to total: inout ImatrixFile, from path: String) throws {
    for (name, s) in file.entries {
      if var t = total.entries[name] {
        guard t.columns == s.columns, t.experts == s.experts else {
          throw StorageError(
            file: path, offset: nil,
            message:
              "tensor '\(name)' has \(s.experts) × \(s.columns) values, the earlier input \(t.experts) × \(t.columns)"
          )
        }
        t.merge(s)
        total.entries[name] = t
      } else {
        total.entries[name] = s
      }
    }
    total.datasets += file.datasets
    if total.chunkSize == 0 { total.chunkSize = file.chunkSize }
    let most = total.entries.values.flatMap(\.tokens).max() ?? 0
    total.chunkCount =
      total.chunkSize > 0 ? most / total.chunkSize : total.chunkCount + file.chunkCount
    total.isLegacy = false
  }
}
