import QoptPasses

/// The `-print-passes` listing: every pass, its summary and each option with its default.
enum PassListing {
  static func text(_ registry: PassRegistry) -> String {
    var out = ""
    for p in registry.passes.sorted(by: { $0.name < $1.name }) {
      out += "\(p.name) - \(p.summary)\n"
      for o in p.options {
        out += "    \(o.key)=<\(o.valueSyntax)> (default: \(o.defaultValue.isEmpty ? "none" : o.defaultValue)) - \(o.help)\n"
      }
    }
    return out
  }
}
