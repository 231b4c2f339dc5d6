import QoptIR
import QoptTestSupport
import Testing

@Test func exampleModelPrintsParsesAndPrintsIdentically() throws {
  let m = ExampleModel.make()
  let text = Printer().print(m)
  let again = try Parser.parse(text, file: "x.ir")
  #expect(Printer().print(again) == text)
  try m.verify()
}

@Test func savedModuleReloadsWithIdenticalTensors() throws {
  let m = ExampleModel.make()
  let pathDir = TestTemporary.makeDirectory("unit")
  defer { TestTemporary.remove(pathDir) }
  let path = pathDir + "/" + "example.ir"
  try ModuleIO.save(m, to: path)
  let back = try ModuleIO.load(path: path)
  try back.verify()
  #expect(Printer().print(back) == Printer().print(m))
  for name in m.weights.names {
    let a = m.weights.dense(name)!
    let b = back.weights.dense(name)!
    #expect(a.isIdentical(to: b), "\(name)")
  }
}

@Test func committedExampleModelIsWhatTheGeneratorMakes() throws {
  let pathDir = TestTemporary.makeDirectory("unit")
  defer { TestTemporary.remove(pathDir) }
  let path = pathDir + "/" + "gen.ir"
  try ModuleIO.save(ExampleModel.make(), to: path)
  let root = TestPaths.repoRoot
  #expect(try readFile(path) == readFile(root + "/IR/examples/tiny-llama.ir"))
  #expect(try readFile(ModuleIO.sidecarPath(for: path)) == readFile(root + "/IR/examples/tiny-llama.safetensors"))
}

@Test(arguments: [
  ("func @f(%x: tensor<4xf32>) -> tensor<4xf32> {\n  return %q : tensor<4xf32>\n}\n", 2, 10, "use of undefined value '%q'"),
  ("func @f(%x: tensor<4xf32>) -> tensor<4xf32> {\n  %y = silu %x : (tensor<4xf32>) -> tensor<4xf32>\n", 3, 1, "unexpected end of file"),
  ("func @f(%x: tensor<4xf32>) -> tensor<4xf32> {\n  %y = silu %x : (tensor<4xf32>) -> tensor<4xf32> {\n}\n", 2, 51, "expected an op name"),
  ("func @f(%x: tensor<4xf32 -> tensor<4xf32> {\n}\n", 1, 25, "expected '>' to close the tensor type"),
  ("module @m attributes {a = }\n", 1, 27, "expected an attribute value"),
  ("func @f(%x: tensor<4xf32>) -> tensor<4xf32> {\n  %y = \"x\\q\"(%x) : (tensor<4xf32>) -> tensor<4xf32>\n}\n", 2, 12, "unknown escape"),
])
func parseErrorsAreLocated(_ text: String, _ line: Int, _ col: Int, _ message: String) {
  #expect {
    _ = try Parser.parse(text, file: "t.ir")
  } throws: { error in
    guard let e = error as? ParseError else { return false }
    return e.location == SourceLocation(file: "t.ir", line: line, column: col) && e.message.contains(message)
  }
}

@Test func verifierReportsEveryProblemWithoutTrapping() throws {
  let text = """
    func @f(%x: tensor<?x8xf32>, %w: tensor<4x6xf32>) -> tensor<?x4xf32> {
      %a = linear %x, %w : (tensor<?x8xf32>, tensor<4x6xf32>) -> tensor<?x4xf32>
      %b = rope %a {head_dim = 3, theta = 1.0} : (tensor<?x4xf32>) -> tensor<?x4xf32>
      return %b : tensor<?x4xf32>
    }
    """
  let m = try Parser.parse(text, file: "v.ir")
  let d = Verifier(checkWeights: false).diagnose(m)
  #expect(d.count == 3)
  #expect(d.allSatisfy { $0.location?.file == "v.ir" })
}

@Test func floatAttributesRoundTripExactly() throws {
  for v in [1e-5, 0.1, 1.0 / 3.0, 1e300, -2.5e-300 / 1e10, 100000.0] {
    let text = "module attributes {v = \(Printer.float(v))}\n\n"
    let m = try Parser.parse(text)
    #expect(m.attributes["v"] == .float(v))
  }
}
