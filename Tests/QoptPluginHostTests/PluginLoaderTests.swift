import QoptExternKernels
import QoptIR
import QoptPasses
import QoptPluginHost
import Testing

/// Loading: the sample plugins register like built-ins; every failure is a typed error with
/// LLVM's wording, and leaves the registry untouched.
@Suite struct PluginLoaderTests {
  @Test func loadsTheCSampleAndListsItsOptions() throws {
    let registry = PassRegistry.builtin()
    let before = registry.names
    let loaded = try PluginLoader.load(try Fixtures.builtPlugin("ClipOutliers"), into: registry)
    #expect(loaded.name == "ClipOutliers")
    #expect(loaded.version == "1.0")
    #expect(loaded.passes == ["clip-outliers"])
    #expect(registry.names == before + ["clip-outliers"])
    let pass = try #require(registry.pass(named: "clip-outliers"))
    #expect(pass.summary.contains("mean ± k·σ"))
    #expect(pass.options.map(\.key) == ["k"])
    #expect(pass.options[0].valueSyntax == "number in 0.1...100.0")
    #expect(pass.options[0].defaultValue == "3.0")
  }

  @Test func loadsTheSwiftSample() throws {
    let registry = PassRegistry.builtin()
    let loaded = try PluginLoader.load(try Fixtures.builtPlugin("BitWidthRule"), into: registry)
    #expect(loaded.name == "BitWidthRule")
    let pass = try #require(registry.pass(named: "bit-width-rule"))
    #expect(pass.options.map(\.key) == ["default", "rule"])
    #expect(pass.options[0].valueSyntax == "int in 2...8")
    #expect(pass.options[0].defaultValue == "4")
  }

  @Test func missingFileIsCannotOpen() throws {
    let registry = PassRegistry.builtin()
    let path = try Fixtures.tempDir() + "/libNope.so"
    let error = #expect(throws: PluginError.self) { try PluginLoader.load(path, into: registry) }
    guard case .cannotOpen(let p, let reason)? = error else { Issue.record("wrong error \(String(describing: error))"); return }
    #expect(p == path)
    #expect(reason.contains("No such file"))
    #expect(error?.description.hasPrefix("error: could not load plugin '\(path)': ") == true)
    #expect(registry.names == PassRegistry.builtin().names)
  }

  @Test func aLibraryThatIsNotAPluginHasNoEntryPoint() throws {
    let error = #expect(throws: PluginError.self) { try PluginLoader.load("libm.so.6", into: PassRegistry.builtin()) }
    #expect(error == .missingEntryPoint(path: "libm.so.6"))
    #expect(error?.message == "plugin entry point 'qoptGetPassPluginInfo' not found in 'libm.so.6'; is it a qopt pass plugin?")
  }

  @Test func aNonLibraryFileCannotBeOpened() throws {
    let path = try Fixtures.tempDir() + "/libText.so"
    try "not an ELF file".write(toFile: path, atomically: true, encoding: .utf8)
    let error = #expect(throws: PluginError.self) { try PluginLoader.load(path, into: PassRegistry.builtin()) }
    guard case .cannotOpen? = error else { Issue.record("wrong error \(String(describing: error))"); return }
  }

  @Test func abiVersionMismatchIsRefusedBeforeRegistration() throws {
    // register_passes would add "minimal-noop"; the version check must come first.
    let lib = try Fixtures.compilePlugin(PluginSources.minimal(apiVersion: "99u"), name: "badversion")
    let registry = PassRegistry.builtin()
    let error = #expect(throws: PluginError.self) { try PluginLoader.load(lib, into: registry) }
    #expect(error == .apiVersionMismatch(path: lib, expected: 2, found: 99))
    #expect(error?.message == "wrong API version on plugin '\(lib)': got version 99, supported version is 2")
    #expect(registry.pass(named: "minimal-noop") == nil)
  }

  @Test func aVersionOnePluginIsRefusedWithTheReason() throws {
    // Version 1 plugins exported kernels for dlsym; their register_passes must not run.
    let lib = try Fixtures.compilePlugin(PluginSources.minimal(apiVersion: "1u"), name: "versionone")
    let registry = PassRegistry.builtin()
    let error = #expect(throws: PluginError.self) { try PluginLoader.load(lib, into: registry) }
    #expect(error == .apiVersionMismatch(path: lib, expected: 2, found: 1))
    #expect(
      error?.message == "wrong API version on plugin '\(lib)': got version 1, supported version is 2; "
        + "rebuild it against this qopt's qopt_plugin.h (version 2 registers external kernels with register_kernel)")
    #expect(registry.pass(named: "minimal-noop") == nil)
  }

  @Test func registersKernelsByName() throws {
    let lib = try Fixtures.compilePlugin(PluginSources.minimal(kernels: [("loader_test.ok_f32", 1, "kernel")]), name: "kernelok")
    let loaded = try PluginLoader.load(lib, into: PassRegistry.builtin())
    #expect(loaded.kernels == ["loader_test.ok_f32"])
    let entry = try #require(ExternKernelRegistry.lookup("loader_test.ok_f32"))
    #expect(entry.operandCount == 1)
    #expect(entry.plugin == lib)
    // The same library loaded into another pass registry registers the same function again.
    #expect(try PluginLoader.load(lib, into: PassRegistry.builtin()).kernels == ["loader_test.ok_f32"])
  }

  @Test func aKernelNameClashRefusesThePluginWhole() throws {
    let first = try Fixtures.compilePlugin(PluginSources.minimal(kernels: [("loader_test_clash", 1, "kernel")]), name: "clash1")
    let second = try Fixtures.compilePlugin(
      PluginSources.minimal(passName: "second-noop", kernels: [("loader_test_other", 1, "kernel"), ("loader_test_clash", 1, "kernel")]),
      name: "clash2")
    try PluginLoader.load(first, into: PassRegistry.builtin())
    let registry = PassRegistry.builtin()
    let error = #expect(throws: PluginError.self) { try PluginLoader.load(second, into: registry) }
    #expect(error == .duplicateKernelName(path: second, name: "loader_test_clash"))
    #expect(error?.message == "plugin '\(second)' registers kernel 'loader_test_clash', but a kernel with that name is already registered")
    #expect(registry.pass(named: "second-noop") == nil)
    #expect(ExternKernelRegistry.lookup("loader_test_other") == nil)
    #expect(ExternKernelRegistry.lookup("loader_test_clash")?.plugin == first)
  }

  @Test(arguments: [
    ("loader_test_twice", 1, "kernel", "twice"),
    ("sys tem", 1, "kernel", "letters, digits"),
    ("", 1, "kernel", "letters, digits"),
    ("loader_test_null", 1, "NULL", "has no function"),
    ("loader_test_many", 17, "kernel", "declares 17 operands"),
    ("loader_test_negative", -1, "kernel", "declares -1 operands"),
  ])
  func malformedKernelsRefuseThePlugin(_ name: String, _ operands: Int, _ fn: String, _ reason: String) throws {
    let kernels = name == "loader_test_twice" ? [(name, operands, fn), (name, operands, fn)] : [(name, operands, fn)]
    let lib = try Fixtures.compilePlugin(PluginSources.minimal(kernels: kernels), name: "badkernel")
    let registry = PassRegistry.builtin()
    let error = #expect(throws: PluginError.self) { try PluginLoader.load(lib, into: registry) }
    #expect(error?.message.contains(reason) == true || error == .duplicateKernelName(path: lib, name: name), "\(String(describing: error))")
    #expect(registry.pass(named: "minimal-noop") == nil)
    if !name.isEmpty { #expect(ExternKernelRegistry.lookup(name) == nil) }
  }

  @Test func shortInfoStructIsRefused() throws {
    let lib = try Fixtures.compilePlugin(PluginSources.minimal(structSize: "8"), name: "shortinfo")
    let error = #expect(throws: PluginError.self) { try PluginLoader.load(lib, into: PassRegistry.builtin()) }
    #expect(error == .structSizeMismatch(path: lib, expected: 32, found: 8))
  }

  @Test func nameClashWithABuiltinIsRefused() throws {
    let lib = try Fixtures.compilePlugin(PluginSources.minimal(passName: "rtn"), name: "clash")
    let registry = PassRegistry.builtin()
    let error = #expect(throws: PluginError.self) { try PluginLoader.load(lib, into: registry) }
    #expect(error == .duplicatePassName(path: lib, name: "rtn"))
    #expect(error?.message == "plugin '\(lib)' registers pass 'rtn', but a pass with that name is already registered")
    #expect(registry.names == PassRegistry.builtin().names)
  }

  @Test func loadingTheSamePluginTwiceClashes() throws {
    let path = try Fixtures.builtPlugin("ClipOutliers")
    let registry = PassRegistry.builtin()
    try PluginLoader.load(path, into: registry)
    let error = #expect(throws: PluginError.self) { try PluginLoader.load(path, into: registry) }
    #expect(error == .duplicatePassName(path: path, name: "clip-outliers"))
  }

  @Test func failingRegistrationIsReported() throws {
    let lib = try Fixtures.compilePlugin(PluginSources.minimal(registerStatus: "QOPT_ERR_FAILED"), name: "regfail")
    let registry = PassRegistry.builtin()
    let error = #expect(throws: PluginError.self) { try PluginLoader.load(lib, into: registry) }
    #expect(error == .registrationFailed(path: lib, reason: "register_passes returned status 5"))
    #expect(registry.pass(named: "minimal-noop") == nil)
  }

  @Test func malformedPassNameIsReported() throws {
    let lib = try Fixtures.compilePlugin(PluginSources.minimal(passName: "bad<name"), name: "badname")
    let error = #expect(throws: PluginError.self) { try PluginLoader.load(lib, into: PassRegistry.builtin()) }
    guard case .registrationFailed(_, let reason)? = error else { Issue.record("wrong error \(String(describing: error))"); return }
    #expect(reason.contains("reserves"))
  }

  @Test func loadAllStopsAtTheFirstFailure() throws {
    let registry = PassRegistry.builtin()
    let clip = try Fixtures.builtPlugin("ClipOutliers")
    #expect(throws: PluginError.missingEntryPoint(path: "libm.so.6")) {
      try PluginLoader.loadAll([clip, "libm.so.6", try Fixtures.builtPlugin("BitWidthRule")], into: registry)
    }
    #expect(registry.pass(named: "clip-outliers") != nil)
    #expect(registry.pass(named: "bit-width-rule") == nil)
  }
}
