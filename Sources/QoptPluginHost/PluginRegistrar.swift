import CQoptPlugin
import QoptExternKernels
import QoptIR
import QoptPasses

/// Collects the passes and external kernels a plugin declares during its `register_passes`
/// call (the `qopt_registry` handle). Nothing reaches the `PassRegistry` or the
/// `ExternKernelRegistry` until the plugin returned success and every declaration checked
/// out, so a refused plugin leaves no trace.
final class PluginRegistrar {
  let path: String
  /// Names already taken (the registry's, then each accepted pass's).
  private var taken: Set<String>
  private(set) var passes: [Pass] = []
  private(set) var kernels: [(name: String, entry: ExternKernelRegistry.Entry)] = []
  /// The first problem found; the loader turns it into the plugin's `PluginError`.
  private(set) var failure: PluginError?

  init(path: String, taken: Set<String>) {
    self.path = path
    self.taken = taken
  }

  /// Runs `body` with this registrar's handle valid.
  func withHandle<R>(_ body: (OpaquePointer) throws -> R) rethrows -> R {
    let token = Unmanaged.passUnretained(self).toOpaque()
    liveRegistrars.insert(UInt(bitPattern: token))
    defer { liveRegistrars.remove(UInt(bitPattern: token)) }
    return try body(OpaquePointer(token))
  }

  /// The `register_pass` entry of the host table.
  static func registerPass(_ reg: OpaquePointer?, _ decl: UnsafePointer<qopt_pass_decl>?) -> Int32 {
    guard let reg, liveRegistrars.contains(UInt(bitPattern: UnsafeRawPointer(reg))) else {
      return QOPT_ERR_INVALID_ARGUMENT
    }
    let r = Unmanaged<PluginRegistrar>.fromOpaque(UnsafeRawPointer(reg)).takeUnretainedValue()
    guard let decl else { return r.refuse("register_pass was given a NULL declaration") }
    return r.add(decl)
  }

  /// The `register_kernel` entry of the host table.
  static func registerKernel(_ reg: OpaquePointer?, _ decl: UnsafePointer<qopt_kernel_decl>?) -> Int32 {
    guard let reg, liveRegistrars.contains(UInt(bitPattern: UnsafeRawPointer(reg))) else {
      return QOPT_ERR_INVALID_ARGUMENT
    }
    let r = Unmanaged<PluginRegistrar>.fromOpaque(UnsafeRawPointer(reg)).takeUnretainedValue()
    guard let decl else { return r.refuse("register_kernel was given a NULL declaration") }
    return r.addKernel(decl)
  }

  private func addKernel(_ declPtr: UnsafePointer<qopt_kernel_decl>) -> Int32 {
    guard declPtr.pointee.struct_size >= UInt32(MemoryLayout<qopt_kernel_decl>.stride) else {
      return refuse("a qopt_kernel_decl has struct_size \(declPtr.pointee.struct_size), expected \(MemoryLayout<qopt_kernel_decl>.stride)")
    }
    let d = declPtr.pointee
    guard let name = d.name.map({ String(cString: $0) }), ExternKernelRegistry.isValidName(name) else {
      return refuse("a kernel name must be letters, digits, '_' and '.', found '\(d.name.map { String(cString: $0) } ?? "")'")
    }
    guard let fn = d.fn else { return refuse("kernel '\(name)' has no function") }
    guard (0...ExternKernelRegistry.maxOperands).contains(Int(d.operand_count)) else {
      return refuse("kernel '\(name)' declares \(d.operand_count) operands; 0...\(ExternKernelRegistry.maxOperands) are supported")
    }
    guard !kernels.contains(where: { $0.name == name }) else {
      if failure == nil { failure = .duplicateKernelName(path: path, name: name) }
      return QOPT_ERR_FAILED
    }
    let address = UInt(bitPattern: unsafeBitCast(fn, to: UnsafeRawPointer.self))
    kernels.append((name, ExternKernelRegistry.Entry(address: address, operandCount: Int(d.operand_count), plugin: path)))
    return QOPT_OK
  }

  private func refuse(_ reason: String, code: Int32 = QOPT_ERR_INVALID_ARGUMENT) -> Int32 {
    if failure == nil { failure = .registrationFailed(path: path, reason: reason) }
    return code
  }

  private func add(_ declPtr: UnsafePointer<qopt_pass_decl>) -> Int32 {
    guard declPtr.pointee.struct_size >= UInt32(MemoryLayout<qopt_pass_decl>.stride) else {
      return refuse("a qopt_pass_decl has struct_size \(declPtr.pointee.struct_size), expected \(MemoryLayout<qopt_pass_decl>.stride)")
    }
    let d = declPtr.pointee
    guard let name = d.name.map({ String(cString: $0) }), !name.isEmpty else { return refuse("a pass has no name") }
    guard !name.contains(where: { ",<>;() \t\n".contains($0) }) else {
      return refuse("pass name '\(name)' contains a character the pipeline syntax reserves")
    }
    guard let run = d.run else { return refuse("pass '\(name)' has no run function") }
    guard d.option_count >= 0, d.option_count == 0 || d.options != nil else {
      return refuse("pass '\(name)' declares \(d.option_count) options without an array")
    }
    var options: [PluginOption] = []
    for i in 0..<Int(d.option_count) {
      do {
        // safe: options is non-nil when option_count > 0 (checked above).
        let o = try PluginOption(d.options![i])
        if options.contains(where: { $0.key == o.key }) { return refuse("pass '\(name)' declares option '\(o.key)' twice") }
        options.append(o)
      } catch {
        return refuse("pass '\(name)': \(error.message)")
      }
    }
    var preserves: [String] = []
    if var p = d.preserves {
      while let s = p.pointee {
        preserves.append(String(cString: s))
        p += 1
      }
    }
    guard taken.insert(name).inserted else {
      if failure == nil { failure = .duplicatePassName(path: path, name: name) }
      return QOPT_ERR_FAILED
    }
    passes.append(
      makePluginPass(
        name: name, summary: d.summary.map { String(cString: $0) } ?? "", options: options, preserves: preserves,
        callback: PluginCallback(run: run, userData: d.user_data)))
    return QOPT_OK
  }
}

/// A plugin's run function and user data. The library is never unloaded, so both stay valid
/// for the process; the host never touches `userData`.
struct PluginCallback: @unchecked Sendable {
  let run: qopt_run_fn
  let userData: UnsafeMutableRawPointer?
}

/// The `Pass` standing for a plugin pass: parses its options from the declared schema, and
/// runs it by handing the plugin a module handle over this run's IR.
func makePluginPass(
  name: String, summary: String, options: [PluginOption], preserves: [String], callback: PluginCallback
) -> Pass {
  Pass(
    name, summary: summary, options: options.map(\.info), preserves: preserves,
    parse: { (items) throws(PipelineError) in try PluginOptionValues.parse(items, declared: options, pass: name) },
    run: { module, opts, context in
      // safe: the parse closure above built the options, always as PluginOptionValues.
      let run = PluginRun(module: module, context: context, options: opts as! PluginOptionValues, passName: name)
      let status = run.withHandle { h in callback.run(callback.userData, UnsafePointer(hostAPI), h, h) }
      if let first = run.errors.first {
        for extra in run.errors.dropFirst() { context.diagnose(Diagnostic(.error, "\(name): \(extra.message)", at: extra.location)) }
        throw PassError(pass: name, first.message, at: first.location)
      }
      if status != QOPT_OK {
        throw PassError(pass: name, "the plugin pass failed with status \(status) and reported no error")
      }
    })
}
