import QoptExternKernels
import QoptIR
import Testing

/// External kernels called through libffi by symbol, with the declared signature checked
/// against the op and against the runtime operands.
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

  private func library() throws -> String { try OutOfTreePluginTests.library.get() }

  @Test func callsAKernelFromALibraryWithTwoOperands() throws {
    let lib = try library()
    let call = try ExternCall(op: try op(#"library = "\#(lib)", operand_types = [tensor<?x4xf32>, tensor<?x4xf32>], result_type = tensor<?x4xf32>, symbol = "demo_axpy2_f32""#))
    let a = ExternTensor(shape: [2, 4], data: (0..<8).map(Float.init))
    let b = ExternTensor(shape: [2, 4], data: (0..<8).map { Float($0) * -0.5 })
    #expect(try call([a, b]).data == zip(a.data, b.data).map { $0 + 2 * $1 })
    #expect(try call([a, b]).shape == [2, 4])
  }

  @Test func signatureMismatchWithTheOpIsLocated() throws {
    let lib = try library()
    let o = try op(#"library = "\#(lib)", operand_types = [tensor<?x8xf32>, tensor<?x4xf32>], result_type = tensor<?x4xf32>, symbol = "demo_axpy2_f32""#)
    let error = #expect(throws: ExternKernelError.self) { try ExternCall(op: o) }
    #expect(error?.description == "k.ir:2:3: error: kernel 'demo_axpy2_f32' operand #0 is declared tensor<?x8xf32> but the op passes tensor<?x4xf32>")
    let count = try op(#"operand_types = [tensor<?x4xf32>], result_type = tensor<?x4xf32>, symbol = "demo_axpy2_f32""#)
    #expect(throws: ExternKernelError.self) { try ExternCall(op: count) }
  }

  @Test func runtimeShapesAreCheckedBeforeTheCall() throws {
    let lib = try library()
    let call = try ExternCall(op: try op(#"library = "\#(lib)", operand_types = [tensor<?x4xf32>, tensor<?x4xf32>], result_type = tensor<?x4xf32>, symbol = "demo_axpy2_f32""#))
    let a = ExternTensor(shape: [2, 4], data: [Float](repeating: 1, count: 8))
    let bad = ExternTensor(shape: [4, 2], data: [Float](repeating: 1, count: 8))
    let error = #expect(throws: ExternKernelError.self) { try call([a, bad]) }
    #expect(error?.description == "k.ir:2:3: error: kernel 'demo_axpy2_f32' operand #1 has shape [4, 2] but the signature declares tensor<?x4xf32>")
    #expect(throws: ExternKernelError.self) { try call([a]) }
  }

  @Test func missingSymbolIsLocatedWithTheSearchedLibraries() throws {
    let o = try op(#"operand_types = [tensor<?x4xf32>, tensor<?x4xf32>], result_type = tensor<?x4xf32>, symbol = "no_such_kernel_f32""#)
    let error = #expect(throws: ExternKernelError.self) { try ExternCall(op: o) }
    #expect(error?.diagnostics.first?.message == "external kernel symbol 'no_such_kernel_f32' not found")
    #expect(error?.diagnostics.first?.location == SourceLocation(file: "k.ir", line: 2, column: 3))
  }

  @Test func aFailingKernelReportsItsStatus() throws {
    let lib = try library()
    let call = try ExternCall(op: try op(#"library = "\#(lib)", operand_types = [tensor<?x4xf32>], result_type = tensor<?x4xf32>, symbol = "demo_fail_f32""#, operands: "%a", types: "tensor<?x4xf32>"))
    let error = #expect(throws: ExternKernelError.self) { try call([ExternTensor(shape: [1, 4], data: [1, 2, 3, 4])]) }
    #expect(error?.message == "external kernel 'demo_fail_f32' failed with status 3")
  }

  @Test func malformedOpsAreRefused() throws {
    #expect(throws: ExternKernelError.self) { try ExternCall(op: try op(#"symbol = "demo_axpy2_f32""#)) }
    #expect(throws: ExternKernelError.self) { try ExternCall(op: try op(#"operand_types = [1, 2], result_type = tensor<?x4xf32>, symbol = "x""#)) }
  }
}
