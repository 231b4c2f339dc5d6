import QoptIR

/// Builds GGUF files byte by byte for tests: metadata of any type, tensors with raw block
/// bytes, and knobs to produce the malformed files the reader must reject.
public struct GGUFBuilder {
  public enum Value {
    case u32(UInt32)
    case i32(Int32)
    case f32(Float)
    case bool(Bool)
    case string(String)
    case strings([String])
    case i32s([Int32])
    /// A raw value type id and its encoded bytes (for unknown types).
    case raw(UInt32, [UInt8])
  }

  public struct Tensor {
    public var name: String
    /// ggml order (fastest first).
    public var dims: [Int]
    public var type: UInt32
    public var data: [UInt8]
    /// Overrides the computed data offset (to build misaligned or out-of-range files).
    public var offset: Int?
    public init(name: String, dims: [Int], type: UInt32, data: [UInt8], offset: Int? = nil) {
      self.name = name
      self.dims = dims
      self.type = type
      self.data = data
      self.offset = offset
    }
  }

  public var magic: [UInt8] = Array("GGUF".utf8)
  public var version: UInt32 = 3
  public var alignment = 32
  public var metadata: [(String, Value)] = []
  public var tensors: [Tensor] = []

  public init() {}

  /// An f32 tensor from row-major values of `shape` (PyTorch order).
  public mutating func addF32(_ name: String, shape: [Int], _ values: [Float]) {
    tensors.append(Tensor(name: name, dims: shape.reversed(), type: 0, data: values.withUnsafeBytes { Array($0) }))
  }

  /// The file bytes, and the file offset where the tensor data section starts.
  public func build() -> (bytes: [UInt8], dataStart: Int) {
    var b: [UInt8] = magic
    func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
    func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
    func str(_ s: String) {
      u64(UInt64(s.utf8.count))
      b += Array(s.utf8)
    }
    u32(version)
    u64(UInt64(tensors.count))
    u64(UInt64(metadata.count))
    for (k, v) in metadata {
      str(k)
      switch v {
      case .u32(let x): u32(4); u32(x)
      case .i32(let x): u32(5); u32(UInt32(bitPattern: x))
      case .f32(let x): u32(6); u32(x.bitPattern)
      case .bool(let x): u32(7); b.append(x ? 1 : 0)
      case .string(let s): u32(8); str(s)
      case .strings(let a):
        u32(9); u32(8); u64(UInt64(a.count))
        for s in a { str(s) }
      case .i32s(let a):
        u32(9); u32(5); u64(UInt64(a.count))
        for x in a { u32(UInt32(bitPattern: x)) }
      case .raw(let t, let bytes): u32(t); b += bytes
      }
    }
    var offset = 0
    var offsets: [Int] = []
    for t in tensors {
      offsets.append(t.offset ?? offset)
      offset += (t.data.count + alignment - 1) / alignment * alignment
    }
    for (t, off) in zip(tensors, offsets) {
      str(t.name)
      u32(UInt32(t.dims.count))
      for d in t.dims { u64(UInt64(d)) }
      u32(t.type)
      u64(UInt64(off))
    }
    while b.count % alignment != 0 { b.append(0) }
    let dataStart = b.count
    for t in tensors {
      b += t.data
      while (b.count - dataStart) % alignment != 0 { b.append(0) }
    }
    return (b, dataStart)
  }
}

/// Tiny checkpoints on disk, derived from `ExampleModel`, for importer tests.
public enum TinyCheckpoints {
  /// A new scratch directory `$TMPDIR/qopt-test-TAG-XXXXXX`; remove it with `removeTree`.
  public static func scratchDirectory(_ tag: String) -> String {
    TestTemporary.makeDirectory("test-\(tag)")
  }

  /// The example model as a llama GGUF with F32 tensors (Q/K rows in GGUF order).
  public static func gguf(_ m: Module, config c: ExampleModel.Config = ExampleModel.Config()) -> GGUFBuilder {
    var g = GGUFBuilder()
    g.metadata = [
      ("general.architecture", .string("llama")),
      ("llama.block_count", .u32(UInt32(c.blocks))),
      ("llama.context_length", .u32(2048)),
      ("llama.embedding_length", .u32(UInt32(c.hidden))),
      ("llama.feed_forward_length", .u32(UInt32(c.ffn))),
      ("llama.attention.head_count", .u32(UInt32(c.heads))),
      ("llama.attention.head_count_kv", .u32(UInt32(c.kvHeads))),
      ("llama.rope.dimension_count", .u32(UInt32(c.headDim))),
      ("llama.rope.freq_base", .f32(Float(c.theta))),
      ("llama.attention.layer_norm_rms_epsilon", .f32(Float(c.eps))),
      ("llama.vocab_size", .u32(UInt32(c.vocab))),
    ]
    let names: [(String, String)] = [
      ("input_layernorm", "attn_norm"), ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
      ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"), ("post_attention_layernorm", "ffn_norm"),
      ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down"),
    ]
    func get(_ n: String) -> TensorData { m.weights.dense(n)! }  // safe: test fixture names
    g.addF32("token_embd.weight", shape: [c.vocab, c.hidden], get("model.embed_tokens.weight").floats())
    for b in 0..<c.blocks {
      for (hf, gg) in names {
        let t = get("model.layers.\(b).\(hf).weight")
        var v = t.floats()
        if gg == "attn_q" || gg == "attn_k" { v = permuteToGGUF(v, rows: t.shape[0], cols: t.shape.count > 1 ? t.shape[1] : 1, headDim: c.headDim) }
        g.addF32("blk.\(b).\(gg).weight", shape: t.shape, v)
      }
    }
    g.addF32("output_norm.weight", shape: [c.hidden], get("model.norm.weight").floats())
    return g
  }

  /// HF → GGUF row order: `W.reshape(n_head, 2, d/2, in).swapaxes(1, 2)`.
  public static func permuteToGGUF(_ w: [Float], rows: Int, cols: Int, headDim d: Int) -> [Float] {
    var out = w
    for r in 0..<rows {
      let h = r / d, i = (r % d) % (d / 2), j = (r % d) / (d / 2)
      let g = h * d + 2 * i + j
      for c in 0..<cols { out[g * cols + c] = w[r * cols + c] }
    }
    return out
  }

  /// Writes `m`'s weights (f32) as an HF checkpoint directory with a config.json built from
  /// `config`; returns the directory.
  public static func writeHF(_ m: Module, configJSON: String, to dir: String, tokenizer: [UInt8]? = nil) throws {
    mkdirP(dir)
    var entries: [SafetensorsEntry] = []
    for n in m.weights.names where n != "tokenizer.json" {
      if let t = m.weights.dense(n) { entries.append(SafetensorsEntry(name: n, data: t)) }
    }
    try SafetensorsWriter.write(entries, metadata: [("format", "pt")], to: dir + "/model.safetensors")
    try writeBytes(Array(configJSON.utf8), to: dir + "/config.json")
    if let tokenizer { try writeBytes(tokenizer, to: dir + "/tokenizer.json") }
  }

  public static func writeBytes(_ bytes: [UInt8], to path: String) throws {
    let w = try AtomicFileWriter(path: path)
    try w.write(bytes)
    try w.commit()
  }
}

#if canImport(Glibc)
  import Glibc
#endif

func mkdirP(_ path: String) {
  var p = ""
  for part in path.split(separator: "/") {
    p += "/" + part
    mkdir(p, 0o755)
  }
}

extension TinyCheckpoints {
  /// Deletes a scratch directory tree made by `scratchDirectory` (files and subdirectories).
  public static func removeTree(_ path: String) {
    guard path.contains("/qopt-test-") else { return }
    TestTemporary.remove(path)
  }
}
