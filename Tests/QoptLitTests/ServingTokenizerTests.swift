import QoptIR
import QoptTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The compressed-tensors directory made from the shared GGUF loads its tokenizer the way
/// serving stacks do: `tokenizers` reads tokenizer.json, the bos/eos strings of
/// tokenizer_config.json are vocabulary tokens whose ids generation_config.json repeats, and the
/// GGUF's chat template renders a conversation under transformers' Jinja settings
/// (`Tests/Scripts/serving_tokenizer_check.py`). The Python packages go into a virtual
/// environment under `.build/` (never the system Python); without python3 -m venv or a
/// reachable package index the test says so and passes.
@Suite(.serialized) struct ServingTokenizerTests {
  static let venv = TestPaths.repoRoot + "/.build/serving-venv"

  /// The venv's python with `tokenizers` and `jinja2`, or nil (with the reason) when it cannot be made.
  static func python() -> (String?, String) {
    let py = venv + "/bin/python"
    if system("'\(py)' -c 'import tokenizers, jinja2' 2>/dev/null") == 0 { return (py, "") }
    guard system("python3 -m venv '\(venv)' >/dev/null 2>&1") == 0 else { return (nil, "python3 -m venv is unavailable") }
    guard system("'\(py)' -m pip install --quiet tokenizers jinja2 >/dev/null 2>&1") == 0 else {
      return (nil, "pip could not install tokenizers and jinja2")
    }
    return (py, "")
  }

  @Test func ggufChatTemplateLoadsAsTransformersExpects() throws {
    let model = TestPaths.shared + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    try #require(fileExists(model), "missing \(model): the real-model tests need ../shared beside the checkout")
    let (py, why) = Self.python()
    guard let py else {
      print("skipped: \(why)")
      return
    }
    let dir = TinyCheckpoints.scratchDirectory("serving")
    defer { TinyCheckpoints.removeTree(dir) }
    let r = try ChildProcess.run([TestPaths.binDir + "/qopt", model, "-emit=compressed-tensors", "-o", dir + "/ct"])
    try #require(r.termination == .exited(0), "qopt: \(r.stderr)")
    let check = try ChildProcess.run([py, TestPaths.repoRoot + "/Tests/Scripts/serving_tokenizer_check.py", dir + "/ct"])
    #expect(check.termination == .exited(0), "\(check.stdout)\(check.stderr)")
    print(check.stdout)
  }
}
