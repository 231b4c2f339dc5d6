import QoptIR
import QoptTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The shared SmolLM2 model quantized by the CLI the way llmcompressor's FP8_DYNAMIC and W8A8
/// presets do it, emitted as compressed-tensors: block 0's tensors (names, dtypes, shapes),
/// the non-block tensors and `quantization_config` exactly as the reference listings in
/// ../shared/data/formats/ (fails loudly without ../shared).
@Suite(.serialized) struct W8A8ListingTests {
  @Test(arguments: [
    ("fp8-dynamic", "rtn<scheme=fp8;group-size=-1>,quantize-activations<type=fp8;mode=dynamic;strategy=token>"),
    ("w8a8-int8", "rtn<bits=8;group-size=-1;scale-rule=minmax>,quantize-activations<type=int8;mode=dynamic;strategy=token>"),
  ])
  func realModelMatchesListing(_ listingName: String, _ pipeline: String) throws {
    let model = TestPaths.shared + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    try #require(fileExists(model), "missing \(model): the real-model tests need ../shared beside the checkout")
    let listing = try FormatListing(path: TestPaths.shared + "/data/formats/\(listingName).md")
    let dir = TinyCheckpoints.scratchDirectory("listing-\(listingName)")
    defer { TinyCheckpoints.removeTree(dir) }
    // The listings come from llmcompressor run on the float32 model (anchors.md): unquantized
    // tensors in f32 as there (by default qopt writes a GGUF source's float tensors as f16).
    let status = system("'\(TestPaths.binDir)/qopt' -passes='\(pipeline)' '\(model)' -emit=compressed-tensors -dense-dtype=f32 -o '\(dir)/out' 2>/dev/null")
    try #require(status == 0, "qopt exited with \(status)")

    let config = try JSON.parse(readFile(dir + "/out/config.json"))
    #expect(config["quantization_config"] == listing.quantizationConfig)
    let st = try SafetensorsFile(path: dir + "/out/model.safetensors")
    var got: [String: (String, [Int])] = [:]
    for (n, d) in st.tensors where listing.covers(n) { got[n] = (d.dtype.safetensorsName, d.shape) }
    #expect(Set(got.keys) == Set(listing.tensors.keys))
    for (n, want) in listing.tensors {
      guard let g = got[n] else { continue }
      #expect(g.0 == want.dtype && g.1 == want.shape, "\(n): \(g) vs \(want)")
    }
  }
}

/// `qopt eval` runs the activation quantization: on the first 4 dev_eval windows, dynamic
/// per-token 8-bit activations cost perplexity over the same 8-bit weights alone, and not
/// much (the reference figures differ from float by 2.5 %; anchors.md). The full 40-window
/// figures are in docs/activations.md.
@Suite(.serialized) struct W8A8PerplexityTests {
  private func perplexity(_ pipeline: String, _ dir: String) throws -> Double {
    let model = TestPaths.shared + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    try #require(fileExists(model), "missing \(model): the real-model tests need ../shared beside the checkout")
    let qopt = "'\(TestPaths.binDir)/qopt'"
    try #require(system("\(qopt) -passes='\(pipeline)' '\(model)' -o '\(dir)/m.ir' 2>/dev/null") == 0)
    let data = TestPaths.shared + "/data/dev_eval.txt"
    try #require(system("\(qopt) eval '\(dir)/m.ir' -data '\(data)' -windows 4 -json > '\(dir)/ppl.json' 2>/dev/null") == 0)
    let ppl = try JSON.parse(readFile(dir + "/ppl.json"))["ppl"]?.doubleValue
    return try #require(ppl)
  }

  @Test(arguments: [
    ("rtn<scheme=fp8;group-size=-1>", "quantize-activations<type=fp8;mode=dynamic;strategy=token>"),
    ("rtn<bits=8;group-size=-1;scale-rule=minmax>", "quantize-activations<type=int8;mode=dynamic;strategy=token>"),
  ])
  func dynamicActivationsCostLittle(_ weights: String, _ activations: String) throws {
    let dir = TinyCheckpoints.scratchDirectory("w8a8-ppl")
    defer { TinyCheckpoints.removeTree(dir) }
    let weightsOnly = try perplexity(weights, dir)
    let both = try perplexity(weights + "," + activations, dir)
    #expect(both > weightsOnly, "\(both) vs weights only \(weightsOnly)")
    #expect(both < weightsOnly * 1.06, "\(both) vs weights only \(weightsOnly)")
  }
}
