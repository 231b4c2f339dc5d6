import QoptFormats
import QoptIR

/// llama-quantize's quantization mixes (`llama_ftype`) whose types CQoptCodecs can encode: the
/// K-quant mixes and the legacy uniform ones. The IQ1/IQ2/IQ3 mixes are not here (their grids
/// are not ported).
public enum LlamaMix: String, Sendable, CaseIterable {
  case q4_0, q4_1, q5_0, q5_1, q8_0
  case q2_k, q2_k_s, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k
  case iq4_nl, iq4_xs

  /// `llama_ftype_get_default_type`: the type of every tensor the mix's rules leave alone.
  public var defaultType: GGMLType {
    switch self {
    case .q4_0: .q4_0
    case .q4_1: .q4_1
    case .q5_0: .q5_0
    case .q5_1: .q5_1
    case .q8_0: .q8_0
    case .q2_k, .q2_k_s: .q2_K
    case .q3_k_s, .q3_k_m, .q3_k_l: .q3_K
    case .q4_k_s, .q4_k_m: .q4_K
    case .q5_k_s, .q5_k_m: .q5_K
    case .q6_k: .q6_K
    case .iq4_nl: .iq4_nl
    case .iq4_xs: .iq4_xs
    }
  }

  /// `general.file_type` as llama-quantize records it (`llama_ftype`).
  public var fileType: UInt32 {
    switch self {
    case .q4_0: 2
    case .q4_1: 3
    case .q8_0: 7
    case .q5_0: 8
    case .q5_1: 9
    case .q2_k: 10
    case .q3_k_s: 11
    case .q3_k_m: 12
    case .q3_k_l: 13
    case .q4_k_s: 14
    case .q4_k_m: 15
    case .q5_k_s: 16
    case .q5_k_m: 17
    case .q6_k: 18
    case .q2_k_s: 21
    case .iq4_nl: 25
    case .iq4_xs: 30
    }
  }

  /// By llama-quantize's name, in any case (`Q4_K_M`, `q4_k_m`), including its aliases `Q3_K`,
  /// `Q4_K` and `Q5_K` for the `_M` mixes.
  public init?(name: String) {
    let n = name.lowercased()
    self.init(rawValue: ["q3_k": "q3_k_m", "q4_k": "q4_k_m", "q5_k": "q5_k_m"][n] ?? n)
  }
}

/// What llama.cpp's type choice reads from the model besides the tensor names
/// (`llama_hparams` and `llama_model`).
public struct LlamaModelFacts: Sendable {
  /// `general.architecture` (`llama`, `falcon`, …); only `falcon` changes the rules here.
  public var architecture: String
  /// `n_layer_all`: the `ffn_*` layer counts the rules divide into eighths and sixteenths.
  public var layerCount: Int
  /// Heads and key-value heads of layer 0 (`n_gqa()` = heads / kv heads, 0 without kv heads).
  public var headCount: Int
  public var kvHeadCount: Int
  /// `n_expert` (0 or 1 for a dense model).
  public var expertCount: Int
  /// llama.cpp's `LLM_TYPE_70B` (its attention-v rule bumps Q3_K/Q4_K to Q5_K there).
  public var is70B: Bool

  public init(
    architecture: String, layerCount: Int, headCount: Int, kvHeadCount: Int, expertCount: Int = 0,
    is70B: Bool = false
  ) {
    self.architecture = architecture
    self.layerCount = layerCount
    self.headCount = headCount
    self.kvHeadCount = kvHeadCount
    self.expertCount = expertCount
    self.is70B = is70B
  }

  var gqa: Int { kvHeadCount == 0 ? 0 : headCount / kvHeadCount }
  var isFalcon: Bool { architecture == "falcon" }
}

/// One tensor of the model as the mix rules see it.
public struct LlamaTensorInfo: Sendable {
  /// The GGUF name (`blk.3.ffn_down.weight`).
  public var name: String
  /// `ne[0]`: the row length (input features of a linear, the hidden size of an embedding).
  public var rowLength: Int
  /// Number of dimensions (`ggml_n_dims`); only 2-D and 3-D tensors are quantized.
  public var dimensionCount: Int
  /// The tensor's type in the source; what a tensor that is not quantized keeps.
  public var sourceType: GGMLType
  /// The tensor's name in the checkpoint it came from (Hugging Face), which `--tensor-type`
  /// patterns match as well as the GGUF name; nil when there is none.
  public var sourceName: String?

  public init(
    name: String, rowLength: Int, dimensionCount: Int, sourceType: GGMLType = .f32,
    sourceName: String? = nil
  ) {
    self.name = name
    self.rowLength = rowLength
    self.dimensionCount = dimensionCount
    self.sourceType = sourceType
    self.sourceName = sourceName
  }

  /// Whether a `--tensor-type` pattern finds this tensor (a regex search in either name).
  func matches(_ pattern: NamePattern) -> Bool {
    pattern.search(name) || sourceName.map { pattern.search($0) } ?? false
  }
}

/// llama-quantize's options that change which type a tensor gets.
public struct LlamaMixOptions: Sendable {
  public var mix: LlamaMix
  /// Whether an importance matrix is given (some legacy and IQ4 rules depend on it).
  public var hasImatrix: Bool
  /// `--pure`: every quantizable tensor takes the mix's default type (then the row-length fallback).
  public var pure: Bool
  /// `--tensor-type PATTERN=TYPE`: the first pattern found in the name wins (a regex search).
  public var overrides: [(pattern: NamePattern, type: GGMLType)]
  /// `--output-tensor-type` and `--token-embedding-type`.
  public var outputTensorType: GGMLType?
  public var tokenEmbeddingType: GGMLType?
  /// false: `--leave-output-tensor` (output.weight keeps its source type).
  public var quantizeOutputTensor: Bool

  public init(
    mix: LlamaMix, hasImatrix: Bool = false, pure: Bool = false,
    overrides: [(pattern: NamePattern, type: GGMLType)] = [],
    outputTensorType: GGMLType? = nil, tokenEmbeddingType: GGMLType? = nil,
    quantizeOutputTensor: Bool = true
  ) {
    self.mix = mix
    self.hasImatrix = hasImatrix
    self.pure = pure
    self.overrides = overrides
    self.outputTensorType = outputTensorType
    self.tokenEmbeddingType = tokenEmbeddingType
    self.quantizeOutputTensor = quantizeOutputTensor
  }
}

/// Why llama-quantize would refuse the model.
public struct LlamaMixError: Error, Sendable, Equatable, CustomStringConvertible {
  public let tensor: String
  public let message: String
  public var description: String { "\(tensor): \(message)" }

  public init(tensor: String, message: String) {
    self.tensor = tensor
    self.message = message
  }
}

/// llama.cpp's per-tensor type choice (`llama_tensor_get_type` in src/llama-quant.cpp, the copy
/// vendored in llama-cpp-python 0.3.36), as a pure function.
///
/// Why a faithful transcription rather than a table: the rules count tensors as they go (the
/// i-th attention-v, the i-th ffn_down, taken in llama.cpp's order — layer number, then name),
/// look at the row length (a K-quant needs rows that are a multiple of 256; otherwise the tensor
/// falls back to a 32-block type: Q2_K/Q3_K → Q4_0, Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0,
/// IQ4_XS → IQ4_NL, and to F16 when even 32 does not divide it), and treat the token embedding
/// as the output when the model ties them (no `output.weight`).
public enum GGUFMixes {
  /// The type of every tensor, keyed by name.
  public static func types(
    for tensors: [LlamaTensorInfo], model: LlamaModelFacts, options: LlamaMixOptions
  ) throws(LlamaMixError) -> [String: GGMLType] {
    var state = State(model: model, options: options)
    state.tiedEmbeddings = !tensors.contains { $0.name == "output.weight" }
    state.attentionVCount = tensors.filter { Category($0.name).isAttentionV }.count
    var result: [String: GGMLType] = [:]
    for t in tensors.sorted(by: loaderOrder) { result[t.name] = try state.type(of: t) }
    return result
  }

  /// The order of llama.cpp's `weights_map` (`weight_name_comparer`): by the layer number of
  /// `blk.N.` (-1 for the rest), then by name.
  static func loaderOrder(_ a: LlamaTensorInfo, _ b: LlamaTensorInfo) -> Bool {
    let (la, lb) = (layerNumber(a.name) ?? -1, layerNumber(b.name) ?? -1)
    if la != lb { return la < lb }
    return a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
  }

  /// `sscanf(name, "blk.%d.", &layer)`: the number after a leading `blk.`.
  static func layerNumber(_ name: String) -> Int? {
    guard name.hasPrefix("blk.") else { return nil }
    let digits = name.dropFirst(4).prefix { $0.isASCII && $0.isNumber }
    return Int(digits)
  }

  /// `tensor_category`.
  enum Category {
    case tokenEmbedding, attentionQ, attentionV, attentionK, attentionQKV, attentionKVB,
      attentionOutput
    case ffnUp, ffnGate, ffnDown, output, other

    init(_ name: String) {
      if name == "output.weight" {
        self = .output
      } else if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        self = .tokenEmbedding
      } else if name.includes("attn_qkv.weight") {
        self = .attentionQKV
      } else if name.includes("attn_kv_b.weight") {
        self = .attentionKVB
      } else if name.includes("attn_v.weight") {
        self = .attentionV
      } else if name.includes("attn_k.weight") {
        self = .attentionK
      } else if name.includes("attn_q.weight") {
        self = .attentionQ
      } else if name.includes("attn_output.weight") {
        self = .attentionOutput
      } else if name.includes("ffn_up") {
        self = .ffnUp
      } else if name.includes("ffn_gate") {
        self = .ffnGate
      } else if name.includes("ffn_down") {
        self = .ffnDown
      } else {
        self = .other
      }
    }

    /// `category_is_attn_v`: the attention-v-like tensors, more sensitive to quantization.
    var isAttentionV: Bool { self == .attentionV || self == .attentionQKV || self == .attentionKVB }
  }

  /// `tensor_allows_quantization`: 2-D or 3-D weights that are not norms, routers or the small
  /// tables llama.cpp keeps as they are.
  static func allowsQuantization(_ t: LlamaTensorInfo, options: LlamaMixOptions) -> Bool {
    if t.dimensionCount < 2 { return false }
    let name = t.name
    guard name.hasSuffix("weight") else { return false }
    if !options.quantizeOutputTensor && name == "output.weight" { return false }
    if name == "position_embd.weight" || name == "token_types.weight" { return false }
    let kept = [
      "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
      "per_layer_model_proj",
      "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
      "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
      "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
      "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
      "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
      "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",
      ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
    ]
    return !kept.contains { name.includes($0) }
  }

  /// `tensor_type_fallback`: a type whose block does not divide the row length becomes the
  /// 32-block type of about the same size, or F16 when 32 does not divide it either (the rule
  /// lives in `GGMLBlockKind.fallback`, which `rtn<scheme=…>` applies too).
  public static func fallback(_ type: GGMLType, rowLength: Int) -> GGMLType {
    type.fallback(rowLength: rowLength)
  }

  /// `quantize_state_impl`: the counters the rules advance as tensors go by.
  struct State {
    let model: LlamaModelFacts
    let options: LlamaMixOptions
    var tiedEmbeddings = true
    var attentionVCount = 0
    var attentionVIndex = 0
    var ffnDownIndex = 0
    var ffnGateIndex = 0
    var ffnUpIndex = 0

    init(model: LlamaModelFacts, options: LlamaMixOptions) {
      self.model = model
      self.options = options
    }

    /// `llama_tensor_get_type`.
    mutating func type(of t: LlamaTensorInfo) throws(LlamaMixError) -> GGMLType {
      guard allowsQuantization(t, options: options) else { return t.sourceType }
      let category = Category(t.name)
      if let e = options.tokenEmbeddingType, category == .tokenEmbedding {
        // per_layer_token_embd follows --token-embedding-type unless a --tensor-type names it.
        let named =
          t.name == "per_layer_token_embd.weight"
          && options.overrides.contains { t.matches($0.pattern) }
        if !named { return e }
      }
      if let o = options.outputTensorType, category == .output { return o }

      var type = options.mix.defaultType
      var manual = false
      if let o = options.overrides.first(where: { t.matches($0.pattern) }) {
        type = o.type
        manual = true
      }
      if !manual && !options.pure { type = try mixRule(type, t, category) }
      return fallback(type, rowLength: t.rowLength)
    }

    /// `use_more_bits`: the first and last eighth of the layers and every third one between.
    static func useMoreBits(_ i: Int, _ n: Int) -> Bool {
      i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
    }

    /// `layer_info`: the running index for a dense model, the `blk.N.` number for an MoE one
    /// (whose expert tensors need not come in layer order).
    func layerInfo(_ index: Int, _ name: String) throws(LlamaMixError) -> (Int, Int) {
      let n = model.layerCount
      guard model.expertCount > 1 else { return (index, n) }
      guard let layer = layerNumber(name) else {
        throw LlamaMixError(
          tensor: name, message: "failed to determine the layer of the tensor (no blk.N. prefix)")
      }
      guard layer < n else {
        throw LlamaMixError(tensor: name, message: "bad layer \(layer): must be in [0, \(n))")
      }
      return (layer, n)
    }

    /// `llama_tensor_get_type_impl` for the mixes of `LlamaMix`.
    mutating func mixRule(
      _ start: GGMLType, _ t: LlamaTensorInfo, _ category: Category
    ) throws(LlamaMixError) -> GGMLType {
      var type = start
      let mix = options.mix
      let falcon = model.isFalcon
      if category == .output || (tiedEmbeddings && category == .tokenEmbedding) {
        if let o = options.outputTensorType {
          type = o
        } else if falcon || t.rowLength % type.blockSize != 0 {
          type = .q8_0
        } else if type != .q8_0 {
          type = .q6_K
        }
      } else if category == .tokenEmbedding {
        if let e = options.tokenEmbeddingType { type = e }
      } else if category.isAttentionV {
        switch mix {
        case .q2_k: type = model.gqa >= 4 ? .q4_K : .q3_K
        case .q2_k_s where model.gqa >= 4: type = .q4_K
        case .q3_k_m: type = attentionVIndex < 2 ? .q5_K : .q4_K
        case .q3_k_l: type = .q5_K
        case .iq4_nl where model.gqa >= 4, .iq4_xs where model.gqa >= 4: type = .q5_K
        case .q4_k_m where Self.useMoreBits(attentionVIndex, attentionVCount),
          .q5_k_m where Self.useMoreBits(attentionVIndex, attentionVCount):
          type = .q6_K
        case .q4_k_s where attentionVIndex < 4: type = .q5_K
        default: break
        }
        if model.is70B && (type == .q3_K || type == .q4_K) { type = .q5_K }
        if model.expertCount == 8 { type = .q8_0 }
        attentionVIndex += 1
      } else if category == .attentionK {
        if model.expertCount == 8 { type = .q8_0 }
      } else if category == .ffnDown {
        let (i, n) = try layerInfo(ffnDownIndex, t.name)
        switch mix {
        case .q2_k: type = .q3_K
        case .q2_k_s: if i < n / 8 { type = .q4_K }
        case .q3_k_m: type = i < n / 16 ? .q5_K : !falcon || Self.useMoreBits(i, n) ? .q4_K : .q3_K
        case .q3_k_l: type = falcon ? .q4_K : .q5_K
        case .q4_k_m:
          if falcon {
            type = i < n / 16 ? .q6_K : Self.useMoreBits(i, n) ? .q5_K : .q4_K
          } else if Self.useMoreBits(i, n) {
            type = .q6_K
          }
        case .iq4_nl, .iq4_xs: if i < n / 8 && !options.hasImatrix { type = .q5_K }
        case .q5_k_m: if Self.useMoreBits(i, n) { type = .q6_K }
        case .q4_k_s: if !falcon && i < n / 8 { type = .q5_K }
        case .q4_0: if options.hasImatrix && i < n / 8 { type = .q4_1 }
        case .q5_0: if options.hasImatrix && i < n / 8 { type = .q5_1 }
        default: break
        }
        ffnDownIndex += 1
      } else if category == .attentionOutput {
        if !falcon {
          if model.expertCount == 8 {
            if [.q2_k, .q3_k_s, .q3_k_m, .iq4_nl, .q4_k_s, .q4_k_m, .iq4_xs].contains(mix) {
              type = .q5_K
            }
          } else {
            switch mix {
            case .q2_k: type = .q3_K
            case .q3_k_m: type = .q4_K
            case .q3_k_l: type = .q5_K
            default: break
            }
          }
        } else if mix == .q3_k_l {
          type = .q4_K
        }
      } else if category == .ffnGate {
        _ = try layerInfo(ffnGateIndex, t.name)  // only the IQ3_XS mix changes gates
        ffnGateIndex += 1
      } else if category == .ffnUp {
        _ = try layerInfo(ffnUpIndex, t.name)
        ffnUpIndex += 1
      }
      return type
    }
  }
}

extension String {
  /// Whether `part` occurs in the string, compared byte by byte (ggml tensor names are ASCII).
  /// The standard library's generic `contains(_:)` builds a search table per call, and
  /// Foundation's goes through CFString: over a model's few hundred names and ~40 patterns each,
  /// either cost tens of milliseconds of a GGUF emit.
  fileprivate func includes(_ part: String) -> Bool {
    var (haystack, needle) = (self, part)
    return haystack.withUTF8 { h in
      needle.withUTF8 { n in
        guard n.count <= h.count else { return false }
        var i = 0
        while i + n.count <= h.count {
          var k = 0
          while k < n.count && h[i + k] == n[k] { k += 1 }
          if k == n.count { return true }
          i += 1
        }
        return false
      }
    }
  }
}
