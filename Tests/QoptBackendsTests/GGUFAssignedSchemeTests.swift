import QoptBackends
import QoptFormats
import QoptIR
import Testing

/// The GGUF backend writes a weight annotated by `assign-schemes` (`{qopt.scheme = "q6_k"}`)
/// in that type, as `-gguf-type-override` would; a command-line override still wins.
@Suite struct GGUFAssignedSchemeTests {
  static func annotate(_ m: Module, _ name: String, _ spelling: String) {
    for op in m.allOps where op.paramName == name {
      op.attributes[AssignedScheme.attribute] = .string(spelling)
    }
  }

  static func types(_ m: Module, _ e: GGUFEmitter = GGUFEmitter()) throws -> [String: GGMLType] {
    Dictionary(uniqueKeysWithValues: try e.layout(m, output: "x").map { ($0.gguf, $0.type) })
  }

  @Test func annotationChoosesTheType() throws {
    let m = SyntheticLlama.make(tied: true)
    Self.annotate(m, "model.layers.0.mlp.down_proj.weight", "q6_k")
    Self.annotate(m, "model.layers.1.self_attn.q_proj.weight", "q5_1")
    Self.annotate(m, "model.embed_tokens.weight", "q8_0")
    let plain = try Self.types(m, GGUFEmitter(types: GGUFTypeSelection(defaultType: .q4_0)))
    // 128-wide rows: q6_k takes llama.cpp's fallback, q8_0.
    #expect(plain["blk.0.ffn_down.weight"] == .q8_0)
    #expect(plain["blk.1.attn_q.weight"] == .q5_1)
    #expect(plain["token_embd.weight"] == .q8_0)
    #expect(plain["blk.1.ffn_down.weight"] == .q4_0)
    // With a mix the annotation replaces the mix's rule for that tensor.
    var sel = GGUFTypeSelection(mix: .q4_k_m)
    let mixed = try Self.types(m, GGUFEmitter(types: sel))
    #expect(mixed["blk.0.ffn_down.weight"] == .q8_0)
    #expect(mixed["blk.1.attn_q.weight"] == .q5_1)
    // An explicit -gguf-type-override wins over the annotation.
    sel.overrides = [GGUFTypeSelection.parseOverride("re:blk.0.ffn_down:q4_1")!]  // safe: literal
    #expect(try Self.types(m, GGUFEmitter(types: sel))["blk.0.ffn_down.weight"] == .q4_1)
  }

  /// A compressed-tensors spelling is not a ggml type: a located error, not a guess.
  @Test func nonGGMLAnnotationIsAnError() throws {
    let m = SyntheticLlama.make(tied: true)
    Self.annotate(m, "model.layers.0.mlp.up_proj.weight", "int4-g64")
    #expect {
      _ = try Self.types(m)
    } throws: { e in
      "\(e)".contains("model.layers.0.mlp.up_proj.weight") && "\(e)".contains("not a ggml type")
    }
  }
}
