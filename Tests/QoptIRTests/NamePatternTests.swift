import QoptIR
import Testing

/// `re:` patterns: Python `re` semantics for the subset, linear time for every pattern.
@Test func namePatternPythonSemantics() throws {
  let q = try NamePattern(#"model\.layers\.\d+\.self_attn\.(q|k|v)_proj"#)
  #expect(q.matchesPrefix("model.layers.12.self_attn.k_proj"))
  #expect(q.matchesPrefix("model.layers.12.self_attn.k_proj.weight"))  // re.match: a prefix suffices
  #expect(!q.matchesPrefix("model.layers.x.self_attn.k_proj"))
  #expect(!q.matchesWhole("model.layers.12.self_attn.k_proj.weight"))
  let any = try NamePattern(".*down_proj$")
  #expect(any.matchesPrefix("model.layers.0.mlp.down_proj"))
  #expect(!any.matchesPrefix("model.layers.0.mlp.down_proj.weight"))
  let search = try NamePattern("ffn_(up|gate)")
  #expect(search.search("blk.3.ffn_gate.weight"))
  #expect(!search.matchesPrefix("blk.3.ffn_gate.weight"))
  #expect(try NamePattern("^lm_head").search("lm_head"))
  #expect(!(try NamePattern("^head").search("lm_head")))
  #expect(try NamePattern("a{2,3}b").matchesWhole("aaab"))
  #expect(!(try NamePattern("a{2,3}b").matchesWhole("aaaab")))
  #expect(try NamePattern("a{2}").matchesWhole("aa"))
  #expect(try NamePattern("x{,2}y").matchesWhole("xxy"))
  #expect(try NamePattern("a{b").matchesWhole("a{b"))  // not a count: literal, as Python
  #expect(try NamePattern("[^0-9_]+").matchesWhole("abc"))
  #expect(!(try NamePattern("[^0-9_]+").matchesWhole("ab_c")))
  #expect(try NamePattern(#"[\d.]+"#).matchesWhole("1.5"))
  #expect(try NamePattern("(?:ab)+|c").matchesWhole("ababab"))
  #expect(try NamePattern("(?P<layer>\\d+)\\.x").matchesWhole("17.x"))
  #expect(try NamePattern("a*?b").matchesWhole("aab"))
  #expect(try NamePattern("").matchesPrefix("anything"))
  #expect(try NamePattern("(a|)+b").matchesWhole("aab"))
}

@Test func namePatternRejectsWhatHasNoLinearMatcher() {
  for (p, why) in [
    (#"(a)\1"#, "back-references"), ("(?=a)", "look-around"), ("(?i)a", "look-around"), ("[a-", "unterminated"),
    ("(ab", "missing ')'"), ("ab)", "unbalanced"), ("*a", "nothing to repeat"), ("a{3,1}", "min above max"),
    (#"\q"#, "unknown escape"), ("a{100000}", "more than"), (String(repeating: "(", count: 200), "nested"),
    (String(repeating: "a", count: 1001), "longer than"),
  ] {
    do {
      _ = try NamePattern(p)
      Issue.record("'\(p)' was accepted")
    } catch {
      #expect(error.description.contains(why), "\(p): \(error.description)")
    }
  }
}

/// Patterns that take exponential time in a backtracking engine finish at once here.
@Test func namePatternIsLinearOnPathologicalPatterns() throws {
  let name = String(repeating: "a", count: 5_000) + "c"
  #expect(!(try NamePattern("(a+)+b").matchesPrefix(name)))
  #expect(!(try NamePattern("(a|aa)*b").search(name)))
  #expect(!(try NamePattern("(a*)*$").matchesWhole(name)))
  #expect(try NamePattern("(.*a){20}").matchesPrefix(name))
}
