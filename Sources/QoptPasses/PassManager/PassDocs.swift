/// The pass reference (docs/passes.md), generated from the registry so it cannot drift: a
/// test fails when the committed file differs; regenerate with `qopt -print-pass-docs`.
public enum PassDocs {
  public static func markdown(_ registry: PassRegistry) -> String {
    var out = """
      # Pass reference

      Generated from the pass registry by `qopt -print-pass-docs > docs/passes.md`; a test fails
      when this file is stale. Pipeline syntax: `-passes='name<key=value;flag;no-flag>,name2'`
      (see docs/ir.md for the IR the passes transform).


      """
    for p in registry.passes.sorted(by: { $0.name < $1.name }) {
      out += "## `\(p.name)`\n\n\(p.summary).\n\n"
      if !p.details.isEmpty { out += p.details + "\n\n" }
      if p.options.isEmpty {
        out += "No options.\n\n"
        continue
      }
      out += "| option | values | default | meaning |\n|---|---|---|---|\n"
      for o in p.options {
        let d = o.defaultValue.isEmpty ? "(none)" : "`\(o.defaultValue)`"
        out += "| `\(o.key)` | \(o.valueSyntax.replacing("|", with: "\\|")) | \(d) | \(o.help) |\n"
      }
      out += "\n"
    }
    return out
  }
}
