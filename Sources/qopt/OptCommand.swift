import ArgumentParser
import QoptFormats
import QoptIR
import QoptPasses
import QoptPluginHost

#if canImport(Glibc)
  import Glibc
#endif

/// The default job: read a model, run a pass pipeline, write or print the result.
struct OptCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "opt", abstract: "Run a pass pipeline over a model (the default command).",
    usage: "qopt [-passes=PIPELINE] [<options>] IN [-o OUT]",
    helpNames: [.customLong("help", withSingleDash: true), .short, .long])

  @Argument(
    help:
      "Input: an .ir file (with its .safetensors sidecar), - for standard input, a .gguf file, or a Hugging Face or compressed-tensors checkpoint directory."
  )
  var input: String = "-"

  @Option(
    name: .customLong("passes", withSingleDash: true),
    help: "Pipeline, e.g. 'rtn<bits=4;group-size=128>,verify'.")
  var passes: String?

  @Option(
    name: .customShort("o"),
    help:
      "Write the result here: NAME.ir (plus its .safetensors sidecar) or NAME.gguf; a directory with -emit=compressed-tensors or -emit=safetensors."
  )
  var output: String?

  @Option(
    name: .customLong("imatrix", withSingleDash: true),
    help: ArgumentHelp(
      "Load llama.cpp's importance matrix (GGUF or legacy .dat, from llama-imatrix or qopt imatrix)"
        + " into the module before the passes."))
  var imatrix: String?

  @Option(
    name: .customLong("load-pass-plugin", withSingleDash: true),
    help:
      "Load a pass plugin (a shared library exporting qoptGetPassPluginInfo) before the pipeline is parsed (repeatable)."
  )
  var loadPassPlugin: [String] = []

  @Flag(
    name: .customLong("print-passes", withSingleDash: true),
    help: "List every pass with its options and defaults, then exit.")
  var printPasses = false

  @Flag(
    name: .customLong("print-pass-docs", withSingleDash: true),
    help: "Print docs/passes.md (the pass reference) and exit.")
  var printPassDocs = false

  @Flag(
    name: .customLong("print-plugin-include-dir", withSingleDash: true),
    help: "Print the directory holding qopt_plugin.h (for cc -I when building a plugin) and exit.")
  var printPluginIncludeDir = false

  @Flag(
    name: .customLong("print-after-all", withSingleDash: true),
    help: "Print the IR to stderr after every pass.")
  var printAfterAll = false

  @Flag(
    name: .customLong("print-before-all", withSingleDash: true),
    help: "Print the IR to stderr before every pass.")
  var printBeforeAll = false

  @Option(
    name: .customLong("print-before", withSingleDash: true),
    help: "Print the IR to stderr before this pass (repeatable).")
  var printBefore: [String] = []

  @Option(
    name: .customLong("print-after", withSingleDash: true),
    help: "Print the IR to stderr after this pass (repeatable).")
  var printAfter: [String] = []

  @Flag(
    name: .customLong("verify-each", withSingleDash: true),
    help: "Verify the module after every pass.")
  var verifyEach = false

  @Flag(
    name: .customLong("time-passes", withSingleDash: true),
    help: "Print tables of pass timings and of input/output timings to stderr.")
  var timePasses = false

  @Flag(
    name: .customLong("debug-pass-manager", withSingleDash: true),
    help: "Log what runs, what is cached and what is invalidated.")
  var debugPassManager = false

  @Flag(
    name: .customLong("verify-diagnostics", withSingleDash: true),
    help: "Check the input's diagnostics against its '// expected-error' comments.")
  var verifyDiagnostics = false

  @Flag(
    name: .customLong("split-input-file", withSingleDash: true),
    help: "Treat each '// -----' separated chunk as its own input.")
  var splitInputFile = false

  @Option(name: .customLong("threads", withSingleDash: true), help: ThreadsOption.help)
  var threadsOption: Int?
  var threads: Int { threadsOption ?? defaultThreads() }

  @Flag(
    name: .customLong("quiet", withSingleDash: true),
    help: "No progress lines and no closing summary on stderr (errors and remarks still print).")
  var quiet = false

  @Flag(
    name: .customLong("fresh", withSingleDash: true),
    help: "Discard the checkpoint an interrupted run kept beside -o (OUT.qopt-resume); start over.")
  var fresh = false

  @Flag(
    name: .customLong("no-checkpoint", withSingleDash: true),
    help: "Keep no checkpoint beside -o: an interrupted autoround starts over.")
  var noCheckpoint = false

  @Option(
    name: .customLong("blocks", withSingleDash: true),
    help: ArgumentHelp(
      "Change only the weights of decoder blocks A..B (inclusive, 0-based, e.g. 0..3; or one index):"
        + " every other weight stays as the input has it; calibrate's forward stops after block B.")
  )
  var blocks: String?

  @Option(name: .customLong("spill-weights", withSingleDash: true), help: WeightSpillOption.help)
  var spillWeights = WeightSpillOption.auto

  @OptionGroup var emit: EmitOptions

  func validate() throws {
    if threads < 1 || threads > 1024 {
      throw ValidationError("-threads must be in 1...1024, found \(threads)")
    }
    if output != nil && splitInputFile {
      throw ValidationError("-o cannot be combined with -split-input-file")
    }
    try emit.validate(output: output)
    if let blocks {
      do { _ = try BlockSelection(parsing: blocks) } catch { throw ValidationError(error.message) }
    }
    if output == nil && (fresh || noCheckpoint) {
      let why = "-fresh and -no-checkpoint apply to the checkpoint kept beside -o OUT"
      throw ValidationError(why + "; without -o there is none")
    }
  }

  func run() throws {
    let started = now()
    if quiet { Progress.shared.style = .quiet }
    if printPluginIncludeDir {
      print(try PluginHeaders.directory(forExecutable: PluginHeaders.currentExecutable()))
      return
    }
    ThreadsOption.apply(threadsOption)
    let registry = PassRegistry.builtin()
    // Plugins join the registry before anything reads it; a failed load throws a PluginError
    // (exit 1) before any pass runs.
    try PluginLoader.loadAll(loadPassPlugin, into: registry)
    if printPasses {
      print(PassListing.text(registry), terminator: "")
      return
    }
    if printPassDocs {
      print(PassDocs.markdown(registry), terminator: "")
      return
    }
    let pipeline: [PassInvocation]
    do {
      pipeline = try PipelineParser.parse(passes ?? "", registry: registry)
    } catch {
      throw PipelineDiagnostic(error: error, text: passes ?? "")
    }
    for name in printBefore + printAfter where registry.pass(named: name) == nil {
      let hint = closestMatch(to: name, in: registry.names).map { "; did you mean '\($0)'?" } ?? ""
      throw ValidationError("unknown pass '\(name)' in -print-before/-print-after\(hint)")
    }
    var ins = Instrumentation()
    ins.printAfterAll = printAfterAll
    ins.printBeforeAll = printBeforeAll
    ins.printBefore = Set(printBefore)
    ins.printAfter = Set(printAfter)
    ins.verifyEach = verifyEach
    ins.timePasses = timePasses
    ins.debugPassManager = debugPassManager
    var manager = PassManager(instrumentation: ins, threads: threads) {
      stderrWrite($0.hasSuffix("\n") ? $0 : $0 + "\n")
    }
    manager.blocks = try blocks.map { try BlockSelection(parsing: $0) }

    if verifyDiagnostics {
      try ExpectedDiagnosticsCheck.run(path: input, split: splitInputFile) { m in
        try manager.run(pipeline, on: m)
        try m.verify()
      }
      return
    }
    if splitInputFile {
      let chunks = try SplitInput.chunks(path: input)
      var outputs: [String] = []
      var failed = false
      for chunk in chunks {
        do {
          let m = try ModuleIO.load(text: chunk, file: input)
          try checkExternKernels(m)
          try m.verify()
          try manager.run(pipeline, on: m)
          try m.verify()
          outputs.append(Printer().print(m))
        } catch let e as any DiagnosticError {
          stderrWrite(CommandLineConventions.render(e) + "\n")
          failed = true
        }
      }
      print(outputs.joined(separator: "// -----\n"), terminator: "")
      if failed { throw ExitCode(1) }
      return
    }
    // A directory output that would destroy files qopt did not write is refused before the
    // input is read and any pass runs.
    if let output { try emit.preflight(output: output) }
    // Block-wise passes checkpoint beside the output; Ctrl-C says what is kept and how to resume.
    let resume = ResumePoint(
      output: noCheckpoint ? nil : output, arguments: CommandLine.arguments)
    manager.checkpoints = try resume.start(fresh: fresh)
    var io: [(String, Double)] = []
    var t0 = now()
    let module = try loadInput(path: input)
    try module.verify()
    try manager.blocks?.check(against: module)
    if let imatrix {
      // Entries the file names replace the module's; weights it does not name keep theirs.
      let loaded = try ImatrixFile.read(path: imatrix).importance(for: module, path: imatrix)
      module.importance.merge(loaded) { $1 }
    }
    io.append(("import " + input, now() - t0))
    // Before any pass: a pipeline whose result the output format refuses, or a pass that would
    // change nothing, fails here in a second rather than after the work.
    let emitter = try output.flatMap { try emit.emitter(threads: threads, output: $0) }
    try Preflight.check(pipeline, module, emitter: emitter)
    let spill = spillWeights.attach(to: module, output: output)
    defer { if let warning = WeightSpillOption.finish(spill) { stderrWrite(warning) } }
    try manager.run(pipeline, on: module)
    try module.verify()
    t0 = now()
    if let emitter, let output {
      try IOProgress.emitting(output, format: emitter.formatName) {
        try emitter.emit(module, to: output)
      }
      io.append(("emit " + emitter.formatName + " " + output, now() - t0))
    } else if let output {
      try IOProgress.emitting(output, format: "ir") { try ModuleIO.save(module, to: output) }
      io.append(("write " + output, now() - t0))
    } else {
      print(Printer().print(module), terminator: "")
    }
    if let warning = resume.finish() { stderrWrite(warning) }
    // With -time-passes, reading the input and writing the output are timed too: on a large
    // checkpoint they are most of the run.
    if timePasses { stderrWrite(timingReport(io, title: "Input and output timing report")) }
    if let output, !quiet {
      stderrWrite(
        RunSummary.text(
          module, output: output, format: emitter?.formatName ?? "ir", seconds: now() - started))
    }
  }
}

/// A pipeline error shown with the pipeline text and a caret under the offending column.
struct PipelineDiagnostic: DiagnosticError {
  let error: PipelineError
  let text: String
  var diagnostics: [Diagnostic] { error.diagnostics }
  var description: String {
    error.description + "\n  " + text + "\n  "
      + String(repeating: " ", count: max(0, error.column - 1)) + "^"
  }
}
