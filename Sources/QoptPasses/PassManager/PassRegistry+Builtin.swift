extension PassRegistry {
  /// A registry holding every built-in pass, one line each, grouped and sorted.
  public static func builtin() -> PassRegistry {
    let r = PassRegistry()
    let builtins: [Pass] = [
      // Quantization
      fuseScalesPass,
      gptqPass,
      roundToNearestPass,
      calibratePass,
      autoRoundPass,
      finetunePass,
      awqPass,
      quantizeActivationsPass,
      smoothQuantPass,
      // Mixed precision
      assignSchemesPass,
      // Cleanup
      deadCodeEliminationPass,
      // Debug
      printPass,
      verifyPass,
    ]
    for p in builtins {
      // safe: the built-in names above are distinct.
      try! r.register(p)
    }
    return r
  }
}
