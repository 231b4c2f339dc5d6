import ArgumentParser
import QoptFormats
import QoptFrontends
import QoptIR
import QoptRuntime

/// `qopt generate MODEL -prompt TEXT -n N`: a short greedy sample, to see that a quantized
/// model still writes sensible text.
struct GenerateCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "generate",
    abstract: "Greedy decoding of a few tokens after a prompt (prints the prompt and its continuation).",
    discussion: """
      The prompt is encoded with the model's tokenizer (no BOS); a model without one, like the
      example model, reads the prompt's UTF-8 bytes as token ids. Each token reruns the whole
      sequence (no KV cache): meant for a short sample, not for serving.
      """,
    helpNames: [.customLong("help", withSingleDash: true), .short, .long])

  @Argument(help: "The model: an .ir file, a checkpoint directory or a .gguf file.")
  var model: String

  @Option(name: .customLong("prompt", withSingleDash: true), help: "The text to continue.")
  var prompt: String

  @Option(name: .customShort("n"), help: "How many tokens to generate.")
  var count: Int = 16

  @Flag(name: .customLong("ids", withSingleDash: true), help: "Also print the prompt's and the generated token ids.")
  var printIds = false

  @Option(name: .customLong("threads", withSingleDash: true), help: ThreadsOption.help)
  var threadsOption: Int?
  var threads: Int { threadsOption ?? defaultThreads() }

  func validate() throws {
    if count < 1 || count > 4096 { throw ValidationError("-n must be in 1...4096, found \(count)") }
    if prompt.isEmpty { throw ValidationError("-prompt must not be empty") }
    if threads < 1 || threads > 1024 { throw ValidationError("-threads must be in 1...1024, found \(threads)") }
  }

  func run() throws {
    ThreadsOption.apply(threadsOption)
    let module = try loadInput(path: model)
    try module.verify()
    let tokenizer: Tokenizer? = try module.tokenizerJSON.map { _ in try Tokenizer(module: module) }
    let ids = tokenizer?.encode(prompt) ?? prompt.utf8.map { Int32($0) }
    let decoder = tokenizer.map(TokenDecoder.init)
    func text(_ ids: [Int32]) -> String {
      decoder?.decode(ids) ?? String(decoding: ids.map { UInt8(truncatingIfNeeded: $0) }, as: UTF8.self)
    }
    let interpreter = Interpreter(module: module, policy: module.weights.names.contains { module.weights.quantized($0) != nil } ? .keepAll : .perUse)
    let phase = Progress.shared.phase("generate: token", total: count)
    var done = 0
    let out = try Generation.greedy(interpreter, prompt: ids, count: count) { _ in
      done += 1
      phase.step(done)
    }
    phase.close()
    print(text(ids) + text(out))
    if printIds {
      print("prompt ids: " + ids.map(String.init).joined(separator: " "))
      print("generated ids: " + out.map(String.init).joined(separator: " "))
    }
  }
}
