import QoptFormats
import QoptIR
import QoptTestSupport
import Testing

/// `rtn<scheme=T>` holds ggml's blocks in the IR and `-emit=gguf` writes them as they are: on
/// the shared model, every tensor `rtn` quantized is byte-identical (and of the same type) to
/// the direct `-emit=gguf:MIX -gguf-pure` of the same float weights — whose encoders are
/// llama.cpp's (`GGUFMixEndToEndTests`, `GGMLCodecReferenceTests`) — plain and with llama-imatrix's
/// matrix for the model. Rows of 576 do not fill Q4_K's 256-blocks: both sides take llama.cpp's
/// fallback (Q5_0) for them, and Q4_K for ffn_down's rows of 1536.
@Suite(
  .serialized,
  .enabled(
    if: fileExists(MixColumns.model) && fileExists(MixColumns.imatrix),
    "needs ../shared/models and ../shared/data/kquants beside the checkout"))
struct GGMLSchemeEndToEndTests {
  @Test(arguments: [
    ("q4_k", "q4_k_m", false), ("q4_k", "q4_k_m", true), ("q6_k", "q6_k", false),
    ("q6_k", "q6_k", true), ("q5_0", "q5_0", false), ("q8_0", "q8_0", false),
  ])
  func rtnThenGGUFEqualsTheDirectEmit(scheme: String, mix: String, imatrix: Bool) throws {
    let dir = TinyCheckpoints.scratchDirectory("ggml-scheme")
    defer { TinyCheckpoints.removeTree(dir) }
    let extra = imatrix ? ["-imatrix=" + MixColumns.imatrix] : []
    let qopt = TestPaths.binDir + "/qopt"
    let direct = try ChildProcess.run(
      [qopt, MixColumns.model, "-emit=gguf:\(mix)", "-gguf-pure", "-o", dir + "/direct.gguf"]
        + extra)
    try #require(direct.termination == .exited(0), "qopt: \(direct.stderr)")
    let viaIR = try ChildProcess.run(
      [
        qopt, MixColumns.model, "-passes=rtn<scheme=\(scheme)>", "-emit=gguf", "-o",
        dir + "/ir.gguf",
      ]
        + extra)
    try #require(viaIR.termination == .exited(0), "qopt: \(viaIR.stderr)")

    let a = try GGUFFile(path: dir + "/direct.gguf")
    let b = try GGUFFile(path: dir + "/ir.gguf")
    var compared = 0
    var mismatches: [String] = []
    for t in b.tensors where t.type.isQuantized && t.name != "token_embd.weight" {
      guard let u = a.tensors.first(where: { $0.name == t.name }) else {
        mismatches.append("\(t.name): not in the direct file")
        continue
      }
      compared += 1
      if u.type != t.type || Array(a.bytes(of: u)) != Array(b.bytes(of: t)) {
        mismatches.append("\(t.name): \(t.type.ggmlName) vs \(u.type.ggmlName)")
      }
    }
    // SmolLM2-135M: 30 layers × 7 linears.
    #expect(compared == 210)
    #expect(mismatches.isEmpty, "\(scheme): \(mismatches.prefix(5).joined(separator: ", "))")
    if scheme == "q4_k" {
      #expect(b.tensors.filter { $0.type == .q4_K }.count == 30)
      #expect(b.tensors.filter { $0.type == .q5_0 }.count == 180)
      #expect(viaIR.stderr.contains("quantized as q5_0 instead (llama.cpp's fallback)"))
    }
  }
}
