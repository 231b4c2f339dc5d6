import Foundation
import QoptExternKernels
import QoptIR
import QoptPasses
import QoptPluginHost
import Testing

/// External kernels: only those a loaded plugin registered can be called, through libffi, with
/// the declared signature checked against the op, the registered operand count and the runtime
/// operands. A model naming anything else (a libc function, a library to open) is refused.
@Suite struct ExternKernelTests {
  private func op(_ attrs: String, operands: String = "%a, %b", types: String = "tensor<?x4xf32>, tensor<?x4xf32>") throws -> Op {
    let text = """
      func @f(%a: tensor<?x4xf32>, %b: tensor<?x4xf32>) -> tensor<?x4xf32> {
        %y = "qopt.extern"(\(operands)) {\(attrs)} : (\(types)) -> tensor<?x4xf32>
        return %y : tensor<?x4xf32>
      }

      """
    let m = try Parser.parse(text, file: "k.ir")
    return try #require(m.allOps.first { $0.name == ExternCall.opName })
  }

  /// Loads the demo plugin, which registers demo_identity_f32, demo_axpy2_f32 and demo_fail_f32.
  @discardableResult
  private func loadDemo() throws -> String {
    let lib = try OutOfTreePluginTests.library.get()
    try PluginLoader.load(lib, into: PassRegistry.builtin())
    return lib
  }

  @Test func callsARegisteredKernelWithTwoOperands() throws {
    let lib = try loadDemo()
    let call = try ExternCall(op: try op(#"operand_types = [tensor<?x4xf32>, tensor<?x4xf32>], result_type = tensor<?x4xf32>, symbol = "demo_axpy2_f32""#))
    #expect(call.plugin == lib)
    let a = ExternTensor(shape: [2, 4], data: (0..<8).map(Float.init))
    let b = ExternTensor(shape: [2, 4], data: (0..<8).map { Float($0) * -0.5 })
    #expect(try call([a, b]).data == zip(a.data, b.data).map { $0 + 2 * $1 })
    #expect(try call([a, b]).shape == [2, 4])
  }

  @Test func signatureMismatchWithTheOpIsLocated() throws {
    try loadDemo()
    let o = try op(#"operand_types = [tensor<?x8xf32>, tensor<?x4xf32>], result_type = tensor<?x4xf32>, symbol = "demo_axpy2_f32""#)
    let error = #expect(throws: ExternKernelError.self) { try ExternCall(op: o) }
    #expect(error?.description == "k.ir:2:3: error: kernel 'demo_axpy2_f32' operand #0 is declared tensor<?x8xf32> but the op passes tensor<?x4xf32>")
    let count = try op(#"operand_types = [tensor<?x4xf32>], result_type = tensor<?x4xf32>, symbol = "demo_axpy2_f32""#)
    #expect(throws: ExternKernelError.self) { try ExternCall(op: count) }
  }

  @Test func theOperandCountMustBeTheRegisteredOne() throws {
    // The declared signature agrees with the op, but the kernel was registered with two
    // operands: calling it with one would read arguments that are not there.
    try loadDemo()
    let o = try op(#"operand_types = [tensor<?x4xf32>], result_type = tensor<?x4xf32>, symbol = "demo_axpy2_f32""#, operands: "%a", types: "tensor<?x4xf32>")
    let error = #expect(throws: ExternKernelError.self) { try ExternCall(op: o) }
    #expect(error?.message.hasPrefix("kernel 'demo_axpy2_f32' takes 2 operands (as registered by '") == true)
    #expect(error?.location == SourceLocation(file: "k.ir", line: 2, column: 3))
  }

  @Test func runtimeShapesAreCheckedBeforeTheCall() throws {
    try loadDemo()
    let call = try ExternCall(op: try op(#"operand_types = [tensor<?x4xf32>, tensor<?x4xf32>], result_type = tensor<?x4xf32>, symbol = "demo_axpy2_f32""#))
    let a = ExternTensor(shape: [2, 4], data: [Float](repeating: 1, count: 8))
    let bad = ExternTensor(shape: [4, 2], data: [Float](repeating: 1, count: 8))
    let error = #expect(throws: ExternKernelError.self) { try call([a, bad]) }
    #expect(error?.description == "k.ir:2:3: error: kernel 'demo_axpy2_f32' operand #1 has shape [4, 2] but the signature declares tensor<?x4xf32>")
    #expect(throws: ExternKernelError.self) { try call([a]) }
  }

  @Test(arguments: ["system", "no_such_kernel_f32", "dlopen", "qoptGetPassPluginInfo"])
  func anUnregisteredNameIsLocatedAndNeverLookedUp(_ symbol: String) throws {
    // `system` and `dlopen` exist in the process and qoptGetPassPluginInfo in the loaded
    // plugin: none of them is registered, so none is reachable.
    try loadDemo()
    let o = try op(#"operand_types = [tensor<?x4xf32>, tensor<?x4xf32>], result_type = tensor<?x4xf32>, symbol = "\#(symbol)""#)
    let error = #expect(throws: ExternKernelError.self) { try ExternCall(op: o) }
    #expect(error?.diagnostics.first?.message == "external kernel '\(symbol)' is not registered")
    #expect(error?.diagnostics.first?.location == SourceLocation(file: "k.ir", line: 2, column: 3))
    #expect(error?.notes.first?.contains("registered: ") == true)
    #expect(error?.notes.first?.contains("demo_identity_f32") == true)
  }

  @Test func aLibraryAttributeIsRefusedEvenForARegisteredKernel() throws {
    let lib = try loadDemo()
    let o = try op(#"library = "\#(lib)", operand_types = [tensor<?x4xf32>, tensor<?x4xf32>], result_type = tensor<?x4xf32>, symbol = "demo_axpy2_f32""#)
    let error = #expect(throws: ExternKernelError.self) { try ExternCall(op: o) }
    #expect(error?.description.hasPrefix("k.ir:2:3: error: 'qopt.extern' has a 'library' attribute; a model file cannot name code to load") == true)
  }

  @Test func checkAllFindsTheFirstBadOpOfAModule() throws {
    try loadDemo()
    let text = """
      func @f(%a: tensor<?x4xf32>) -> tensor<?x4xf32> {
        %y = "qopt.extern"(%a) {operand_types = [tensor<?x4xf32>], result_type = tensor<?x4xf32>, symbol = "demo_identity_f32"} : (tensor<?x4xf32>) -> tensor<?x4xf32>
        %z = "qopt.extern"(%y) {operand_types = [tensor<?x4xf32>], result_type = tensor<?x4xf32>, symbol = "system"} : (tensor<?x4xf32>) -> tensor<?x4xf32>
        return %z : tensor<?x4xf32>
      }

      """
    let m = try Parser.parse(text, file: "m.ir")
    let error = #expect(throws: ExternKernelError.self) { try ExternCall.checkAll(in: m) }
    #expect(error?.description.hasPrefix("m.ir:3:3: error: external kernel 'system' is not registered") == true)
    let good = try Parser.parse(text.replacingOccurrences(of: #"symbol = "system""#, with: #"symbol = "demo_identity_f32""#), file: "m.ir")
    #expect(throws: Never.self) { try ExternCall.checkAll(in: good) }
  }

  @Test func aResultShapeThatOverflowsIsAnErrorNotATrap() throws {
    try loadDemo()
    let text = """
      func @f(%a: tensor<?x4xf32>) -> tensor<4294967296x4294967296xf32> {
        %y = "qopt.extern"(%a) {operand_types = [tensor<?x4xf32>], result_type = tensor<4294967296x4294967296xf32>, symbol = "demo_identity_f32"} : (tensor<?x4xf32>) -> tensor<4294967296x4294967296xf32>
        return %y : tensor<4294967296x4294967296xf32>
      }

      """
    let o = try #require(try Parser.parse(text, file: "big.ir").allOps.first { $0.name == ExternCall.opName })
    let call = try ExternCall(op: o)
    let error = #expect(throws: ExternKernelError.self) { try call([ExternTensor(shape: [1, 4], data: [1, 2, 3, 4])]) }
    #expect(error?.description == "big.ir:2:3: error: kernel 'demo_identity_f32': result shape [4294967296, 4294967296] has more elements than can be addressed")
  }

  @Test func aFailingKernelReportsItsStatus() throws {
    try loadDemo()
    let call = try ExternCall(op: try op(#"operand_types = [tensor<?x4xf32>], result_type = tensor<?x4xf32>, symbol = "demo_fail_f32""#, operands: "%a", types: "tensor<?x4xf32>"))
    let error = #expect(throws: ExternKernelError.self) { try call([ExternTensor(shape: [1, 4], data: [1, 2, 3, 4])]) }
    #expect(error?.message == "external kernel 'demo_fail_f32' failed with status 3")
  }

  @Test func malformedOpsAreRefused() throws {
    #expect(throws: ExternKernelError.self) { try ExternCall(op: try op(#"symbol = "demo_axpy2_f32""#)) }
    #expect(throws: ExternKernelError.self) { try ExternCall(op: try op(#"operand_types = [1, 2], result_type = tensor<?x4xf32>, symbol = "x""#)) }
  }
}
