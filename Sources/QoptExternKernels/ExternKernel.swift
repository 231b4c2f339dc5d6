internal import CFFI
import QoptIR

/// An f32 tensor passed to or returned by an external kernel (row-major).
public struct ExternTensor: Sendable, Equatable {
  /// Dimensions, outermost first.
  public var shape: [Int]
  /// `shape.reduce(1, *)` values.
  public var data: [Float]
  public init(shape: [Int], data: [Float]) {
    self.shape = shape
    self.data = data
  }
}

/// An external kernel that cannot be called: unknown symbol, malformed op, or operands that
/// do not match the declared signature. Located at the op.
public struct ExternKernelError: DiagnosticError, Sendable {
  /// What is wrong (prefixed by the op's path when the op has no source location).
  public var message: String
  /// The op's location in its `.ir` file, when it was parsed from one.
  public var location: SourceLocation?
  /// Extra lines, such as the kernels that are registered.
  public var notes: [String]
  public init(_ message: String, at location: SourceLocation?, notes: [String] = []) {
    self.message = message
    self.location = location
    self.notes = notes
  }
  public var diagnostics: [Diagnostic] { [Diagnostic(.error, message, at: location, notes: notes)] }
}

/// A call to a C function a loaded plugin registered (`host->register_kernel`), made through
/// libffi, as LLVM's interpreter calls external functions. The IR convention is a generic op:
///
///     %y = "qopt.extern"(%x) {symbol = "hadamard_f32", operand_types = [tensor<?x64xf32>],
///                             result_type = tensor<?x64xf32>} : (tensor<?x64xf32>) -> tensor<?x64xf32>
///
/// `symbol` is a name in `ExternKernelRegistry`, never a symbol looked up in a library: a model
/// file can reach only kernels that plugins named on the command line registered, and cannot
/// name a library to load (the version-1 `library` attribute is refused). The declared
/// `operand_types` / `result_type` are the kernel's signature: they must match the op's own
/// types and the registered operand count when the call is prepared, and every runtime operand
/// must match its declared type (dynamic `?` dimensions match any size) before the call.
/// Tensors are f32.
///
/// The C function is called as
///
///     int32_t kernel(const float *x0, const int64_t *x0_dims, int64_t x0_rank, …,  // per operand
///                    float *out, const int64_t *out_dims, int64_t out_rank);       // 0 on success
///
/// The result's dynamic dimensions take the size of operand 0's dimension at the same index.
///
/// Complexity: one libffi call per evaluation plus a copy of each operand and of the result.
public struct ExternCall: @unchecked Sendable {
  /// The op name of the convention.
  public static let opName = "qopt.extern"

  /// The C symbol called.
  public let symbol: String
  /// The declared signature (`operand_types`, `result_type`).
  public let operandTypes: [TensorType]
  public let resultType: TensorType
  /// The op's location, for errors raised at call time.
  public let location: SourceLocation?
  /// The path of the plugin that registered the kernel.
  public let plugin: String
  private let address: UnsafeMutableRawPointer
  private let cif: FFICallInterface

  /// Checks `op` against the convention and finds its kernel in the registry; throws a
  /// located error.
  public init(op: Op) throws(ExternKernelError) {
    let loc = op.location
    let at = loc == nil ? "\(op.path): " : ""
    func fail(_ m: String, notes: [String] = []) -> ExternKernelError { ExternKernelError(at + m, at: loc, notes: notes) }
    guard op.name == ExternCall.opName else { throw fail("'\(op.name)' is not a '\(ExternCall.opName)' op") }
    guard op.attributes["library"] == nil else {
      throw fail(
        "'\(ExternCall.opName)' has a 'library' attribute; a model file cannot name code to load",
        notes: ["external kernels come only from plugins loaded with -load-pass-plugin, which register them by name"])
    }
    guard let symbol = op.attributes["symbol"]?.stringValue, !symbol.isEmpty else {
      throw fail("'\(ExternCall.opName)' needs a string attribute 'symbol'")
    }
    guard let entry = ExternKernelRegistry.lookup(symbol) else {
      let known = ExternKernelRegistry.names
      throw fail(
        "external kernel '\(symbol)' is not registered",
        notes: [
          "only kernels registered by a plugin loaded with -load-pass-plugin can run"
            + (known.isEmpty ? "; no plugin registered any" : "; registered: \(known.joined(separator: ", "))")
        ])
    }
    guard let list = op.attributes["operand_types"]?.arrayValue else {
      throw fail("'\(ExternCall.opName)' needs 'operand_types = [tensor<…>, …]' (the kernel's signature)")
    }
    var declared: [TensorType] = []
    for a in list {
      guard case .type(let t) = a else { throw fail("'operand_types' must list tensor types") }
      declared.append(t)
    }
    guard case .type(let resultType)? = op.attributes["result_type"] else {
      throw fail("'\(ExternCall.opName)' needs 'result_type = tensor<…>'")
    }
    guard let result = op.result else { throw fail("'\(ExternCall.opName)' must have a result") }
    guard declared.count == op.operands.count else {
      throw fail("kernel '\(symbol)' is declared with \(declared.count) operands but the op has \(op.operands.count)")
    }
    for (i, (t, v)) in zip(declared, op.operands).enumerated() {
      guard t.element == .plain(.f32) else { throw fail("kernel '\(symbol)' operand #\(i): only f32 tensors can be passed, declared \(Printer.type(t))") }
      guard t.isCompatible(with: v.type) else {
        throw fail("kernel '\(symbol)' operand #\(i) is declared \(Printer.type(t)) but the op passes \(Printer.type(v.type))")
      }
    }
    guard resultType.element == .plain(.f32), resultType.isCompatible(with: result.type) else {
      throw fail("kernel '\(symbol)' is declared to return \(Printer.type(resultType)) but the op's result is \(Printer.type(result.type))")
    }
    guard declared.count == entry.operandCount else {
      throw fail("kernel '\(symbol)' takes \(entry.operandCount) operands (as registered by '\(entry.plugin)') but the op passes \(declared.count)")
    }
    // safe: a registered address is a non-null function pointer.
    let address = UnsafeMutableRawPointer(bitPattern: entry.address)!
    guard let cif = FFICallInterface(tensorArguments: declared.count + 1) else {
      throw fail("libffi could not prepare a call to '\(symbol)'")
    }
    self.symbol = symbol
    self.operandTypes = declared
    self.resultType = resultType
    self.location = loc
    self.plugin = entry.plugin
    self.address = address
    self.cif = cif
  }

  /// Checks every `qopt.extern` op of `module` (`init(op:)`): run before anything executes,
  /// so that a model naming an unregistered kernel or a library is refused up front.
  public static func checkAll(in module: Module) throws(ExternKernelError) {
    for op in module.allOps where op.name == opName { _ = try ExternCall(op: op) }
  }

  /// Calls the kernel on `inputs` after checking them against the declared signature.
  public func callAsFunction(_ inputs: [ExternTensor]) throws(ExternKernelError) -> ExternTensor {
    guard inputs.count == operandTypes.count else {
      throw ExternKernelError("kernel '\(symbol)' takes \(operandTypes.count) operands, called with \(inputs.count)", at: location)
    }
    for (i, (x, t)) in zip(inputs, operandTypes).enumerated() {
      let fits = x.shape.count == t.rank && zip(x.shape, t.shape).allSatisfy { s, d in d == nil || d == s }
      guard fits, x.data.count == x.shape.reduce(1, *) else {
        throw ExternKernelError("kernel '\(symbol)' operand #\(i) has shape \(x.shape) but the signature declares \(Printer.type(t))", at: location)
      }
    }
    var outShape: [Int] = []
    for (i, d) in resultType.shape.enumerated() {
      if let d { outShape.append(d); continue }
      guard let first = inputs.first, i < first.shape.count else {
        throw ExternKernelError("kernel '\(symbol)': result dimension #\(i) is dynamic and operand 0 has no dimension #\(i) to take it from", at: location)
      }
      outShape.append(first.shape[i])
    }
    // The declared result type comes from the model file: its size is checked, never trusted.
    var count = 1
    for d in outShape {
      let (p, overflow) = count.multipliedReportingOverflow(by: d)
      guard !overflow else {
        throw ExternKernelError("kernel '\(symbol)': result shape \(outShape) has more elements than can be addressed", at: location)
      }
      count = p
    }
    var out = ExternTensor(shape: outShape, data: [Float](repeating: 0, count: count))
    let status = cif.call(address, inputs: inputs, output: &out)
    guard status == 0 else {
      throw ExternKernelError("external kernel '\(symbol)' failed with status \(status)", at: location)
    }
    return out
  }
}

/// A prepared libffi call interface `int32_t f(float *, int64_t *, int64_t, …)`: `n` tensor
/// arguments, each passed as (data, dims, rank).
final class FFICallInterface: @unchecked Sendable {
  private let cif = UnsafeMutablePointer<ffi_cif>.allocate(capacity: 1)
  private let types: UnsafeMutablePointer<UnsafeMutablePointer<ffi_type>?>
  let tensors: Int

  init?(tensorArguments n: Int) {
    tensors = n
    types = .allocate(capacity: 3 * n)
    for i in 0..<n {
      types[3 * i] = qopt_ffi_type_pointer()
      types[3 * i + 1] = qopt_ffi_type_pointer()
      types[3 * i + 2] = qopt_ffi_type_sint64()
    }
    guard ffi_prep_cif(cif, FFI_DEFAULT_ABI, UInt32(3 * n), qopt_ffi_type_sint32(), types) == FFI_OK else { return nil }
  }

  deinit {
    cif.deallocate()
    types.deallocate()
  }

  /// Calls `fn` with (data, dims, rank) per input, then for the output.
  func call(_ fn: UnsafeMutableRawPointer, inputs: [ExternTensor], output: inout ExternTensor) -> Int32 {
    precondition(inputs.count + 1 == tensors, "argument count matches the prepared interface")
    // Every buffer must stay valid across ffi_call, so each is copied into memory owned by
    // this call rather than borrowed from an array closure.
    var owned: [UnsafeMutableRawPointer] = []
    defer { for p in owned { p.deallocate() } }
    func copy<T>(_ a: [T]) -> UnsafeMutableRawPointer {
      let p = UnsafeMutableRawPointer.allocate(byteCount: max(a.count, 1) * MemoryLayout<T>.stride, alignment: 16)
      a.withUnsafeBytes { if let b = $0.baseAddress { p.copyMemory(from: b, byteCount: $0.count) } }
      owned.append(p)
      return p
    }
    let outData = copy(output.data)
    let all = inputs.map { (copy($0.data), $0.shape) } + [(outData, output.shape)]
    // libffi takes a pointer to each argument's value: slots hold the values, three per tensor.
    let n = 3 * tensors
    let slots = UnsafeMutableRawPointer.allocate(byteCount: 8 * n, alignment: 8)
    let values = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: n)
    defer {
      slots.deallocate()
      values.deallocate()
    }
    for (i, (data, shape)) in all.enumerated() {
      slots.storeBytes(of: data, toByteOffset: 8 * (3 * i), as: UnsafeMutableRawPointer.self)
      slots.storeBytes(of: copy(shape.map { Int64($0) }), toByteOffset: 8 * (3 * i + 1), as: UnsafeMutableRawPointer.self)
      slots.storeBytes(of: Int64(shape.count), toByteOffset: 8 * (3 * i + 2), as: Int64.self)
    }
    for i in 0..<n { values[i] = slots + 8 * i }
    var rc: ffi_arg = 0
    ffi_call(cif, unsafeBitCast(fn, to: (@convention(c) () -> Void).self), &rc, values)
    let count = output.data.count
    output.data.withUnsafeMutableBufferPointer { dst in
      if let d = dst.baseAddress { d.update(from: outData.assumingMemoryBound(to: Float.self), count: count) }
    }
    return Int32(truncatingIfNeeded: rc)
  }
}
