import QoptIR
import Testing

@Test func parsesNestedValuesAndKeepsOrder() throws {
  let j = try JSON.parse(#"{"b": [1, 2.5, -3e2, true, null], "a": {"s": "x\u00e9\ud83d\ude00\n"}}"#)
  #expect(j.objectPairs?.map(\.0) == ["b", "a"])
  #expect(j["b"]?.arrayValue?[0] == .int(1))
  #expect(j["b"]?.arrayValue?[2] == .double(-300))
  #expect(j["a"]?["s"]?.stringValue == "xé😀\n")
}

@Test(arguments: [
  (#"{"a": 1,}"#, 8), (#"{"a" 1}"#, 5), ("[1, 2", 5), (#""abc"#, 0), ("tru", 3), (#"{"a": "\x"}"#, 9),
])
func rejectsMalformedJSONWithOffset(_ text: String, _ offset: Int) {
  #expect {
    _ = try JSON.parse(text)
  } throws: { ($0 as? JSONError)?.offset == offset }
}

@Test func deepNestingIsAnErrorNotAStackOverflow() {
  let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
  #expect(throws: JSONError.self) { _ = try JSON.parse(deep) }
}
