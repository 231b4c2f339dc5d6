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
    #expect(error == .apiVersionMismatch(path: lib, expected: 1, found: 99))
    #expect(error?.message == "wrong API version on plugin '\(lib)': got version 99, supported version is 1")
    #expect(registry.pass(named: "minimal-noop") == nil)
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
