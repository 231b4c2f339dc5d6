import QoptFormats
import QoptIR

/// A Hugging Face checkpoint directory (config.json + `model.safetensors`, or shards listed in
/// `model.safetensors.index.json`) → IR, for the Llama family: llama, mistral, qwen2.
///
/// f32 tensors stay memory-mapped from the checkpoint; f16/bf16 ones stay mapped too and are
/// converted to f32 when a pass or backend reads them (a chunk of rows at a time where it can),
/// so importing costs no memory whatever the model's size. tokenizer.json and the serving files beside it (tokenizer_config.json,
/// generation_config.json, …), when present, are stored as u8 weights of the same names so the
/// `.ir` sidecar carries them and directory backends write them back.
public enum HFImporter {
  public static func importModel(directory dir: String) throws(FrontendError) -> Module {
    let configPath = dir + "/config.json"
    if try readJSON(configPath)["quantization_config"] != nil {
      return try importCompressed(directory: dir)
    }
    let config = try readConfig(configPath)
    let store = WeightStore()
    var sourceTypes: [String: String] = [:]
    let all = try tensors(in: dir)
    Progress.shared.expect(bytes: all.reduce(0) { $0 + $1.1.byteCount })
    for (name, data, file) in all {
      defer { Progress.shared.advance(bytes: data.byteCount) }
      guard name.hasPrefix("model.") || name == "lm_head.weight" else { continue }
      guard !(config.tieWordEmbeddings && name == "lm_head.weight") else { continue }
      store.set(name, .dense(try asF32(data, name: name, file: file, supported: "F32, F16, BF16")))
      sourceTypes[name] = data.dtype.rawValue
    }
    for name in [LlamaLowering.tokenizerWeight] + LlamaLowering.servingFiles.map(\.file) {
      let path = dir + "/" + name
      guard fileExists(path) else { continue }
      let bytes: [UInt8]
      do { bytes = try readFile(path) } catch { throw FrontendError(error) }
      store.set(name, .dense(TensorData(dtype: .u8, shape: [bytes.count], bytes: bytes)))
    }
    let module = try LlamaLowering.lower(config, store: store, sourceTypes: sourceTypes, file: dir)
    // The families beyond Llama keep their config.json, so directory backends write back the
    // keys the IR does not model (layer_types, rope_parameters per layer type, …).
    if familyModelTypes.contains(config.modelType) {
      module.attributes["hf_config"] = .string(try readJSON(configPath).pretty)
    }
    return module
  }

  /// A compressed-tensors checkpoint (what qopt's own backend and llmcompressor write): the
  /// packed weights come back as quantized IR weights with the same codes and scales, so
  /// `qopt` re-emits, evaluates or re-quantizes them as it would its own `rtn` output.
  static func importCompressed(directory dir: String) throws(FrontendError) -> Module {
    // The reader first: it validates every tensor and names what it does not support.
    let read: CompressedTensorsReader.Result
    do { read = try CompressedTensorsReader.read(directory: dir) } catch let e as StorageError {
      throw FrontendError(e)
    } catch {
      throw FrontendError(file: dir, place: .none, "\(error)")
    }
    let config = try readConfig(dir + "/config.json")
    let store = WeightStore()
    store.sourcePath = dir
    var sourceTypes: [String: String] = [:]
    for name in read.weights.names {
      guard let e = read.weights[name] else { continue }
      let model = name.hasPrefix("model.") || name == "lm_head.weight"
      guard
        model || name == LlamaLowering.tokenizerWeight
          || LlamaLowering.servingFiles.contains(where: { $0.file == name })
      else { continue }
      guard !(config.tieWordEmbeddings && name == "lm_head.weight") else { continue }
      switch e {
      case .quantized:
        store.set(name, e)
        sourceTypes[name] = "compressed-tensors"
      case .dense where !model:
        store.set(name, e)
      case .dense(let data):
        store.set(
          name,
          .dense(
            try asF32(
              data, name: name, file: dir,
              supported: "F32, F16, BF16 and compressed-tensors packed weights")))
        sourceTypes[name] = data.dtype.rawValue
      }
    }
    let module = try LlamaLowering.lower(config, store: store, sourceTypes: sourceTypes, file: dir)
    for (k, v) in read.attributes where k == "hf_config" { module.attributes[k] = v }
    // W8A8: a linear whose config group quantizes its input gets the `input_*` attributes back.
    for op in module.allOps where op.kind == .linear {
      guard let name = op.operands[1].definingOp?.paramName, let q = read.inputQuantization[name]
      else { continue }
      for (k, v) in q.attributes { op.attributes[k] = v }
    }
    return module
  }

  /// A checkpoint tensor as the runtime's f32: f32 as it is (memory-mapped), f16/bf16 converted
  /// on use from the mapped bytes (`TensorData(f32Decoding:)`), anything else an error naming
  /// the tensor.
  static func asF32(
    _ data: TensorData, name: String, file: String, supported: String
  ) throws(FrontendError) -> TensorData {
    switch data.dtype {
    case .f32: return data
    case .f16, .bf16:
      return TensorData(f32Decoding: data)
    default:
      throw FrontendError(
        file: file, key: name,
        "tensor dtype \(data.dtype.safetensorsName) is not supported (supported: \(supported))")
    }
  }

  /// Every tensor of the checkpoint, from the single file or from the shards of the index.
  static func tensors(in dir: String) throws(FrontendError) -> [(String, TensorData, String)] {
    let single = dir + "/model.safetensors"
    let indexPath = dir + "/model.safetensors.index.json"
    if fileExists(single) {
      do {
        return try SafetensorsFile(path: single).tensors.map { ($0.name, $0.data, single) }
      } catch { throw FrontendError(error) }
    }
    guard fileExists(indexPath) else {
      throw FrontendError(
        file: dir, place: .none,
        "no model.safetensors or model.safetensors.index.json in the checkpoint directory")
    }
    let index = try readJSON(indexPath)
    guard let map = index["weight_map"]?.objectPairs else {
      throw FrontendError(file: indexPath, key: "weight_map", "missing or not an object")
    }
    var files: [String] = []
    var wanted: [String: String] = [:]
    for (name, f) in map {
      guard let file = f.stringValue, !file.contains("/") else {
        throw FrontendError(
          file: indexPath, key: "weight_map.\(name)", "must name a shard file in the same directory"
        )
      }
      if !files.contains(file) { files.append(file) }
      wanted[name] = file
    }
    var out: [(String, TensorData, String)] = []
    var found = Set<String>()
    for file in files {
      let path = dir + "/" + file
      guard fileExists(path) else {
        throw FrontendError(file: indexPath, key: "weight_map", "shard '\(file)' does not exist")
      }
      let st: SafetensorsFile
      do { st = try SafetensorsFile(path: path) } catch { throw FrontendError(error) }
      for (name, data) in st.tensors where wanted[name] == file {
        out.append((name, data, path))
        found.insert(name)
      }
    }
    if let missing = wanted.keys.sorted().first(where: { !found.contains($0) }) {
      throw FrontendError(
        file: indexPath, key: "weight_map.\(missing)",
        "tensor is not in shard '\(wanted[missing] ?? "")'")
    }
    return out
  }

  static func readJSON(_ path: String) throws(FrontendError) -> JSON {
    let bytes: [UInt8]
    do { bytes = try readFile(path) } catch { throw FrontendError(error) }
    do { return try JSON.parse(bytes) } catch {
      throw FrontendError(file: path, offset: error.offset, "not valid JSON: \(error.message)")
    }
  }

  /// Parses config.json into a `LlamaConfig`, with transformers' defaults for optional keys.
  public static func readConfig(_ path: String) throws(FrontendError) -> LlamaConfig {
    try readConfig(json: try readJSON(path), path: path)
  }

  /// `readConfig` of an already parsed config (the GGUF importer builds one from metadata);
  /// errors name `path`.
  static func readConfig(json j: JSON, path: String) throws(FrontendError) -> LlamaConfig {
    guard j.objectPairs != nil else {
      throw FrontendError(file: path, offset: 0, "config.json is not a JSON object")
    }
    let supported = (LlamaConfig.supportedModelTypes + familyModelTypes).joined(separator: ", ")
    guard let mt = j["model_type"]?.stringValue else {
      throw FrontendError(
        file: path, key: "model_type", "missing (supported model types: \(supported))")
    }
    guard LlamaConfig.supportedModelTypes.contains(mt) || familyModelTypes.contains(mt) else {
      throw FrontendError(
        file: path, key: "model_type", "unsupported model type '\(mt)' (supported: \(supported))")
    }
    func int(_ k: String, _ dv: Int? = nil) throws(FrontendError) -> Int {
      guard let v = j[k], v != .null else {
        if let dv { return dv }
        throw FrontendError(
          file: path, key: k,
          "missing (required for model_type '\(mt)'; supported model types: \(supported))")
      }
      guard let i = v.intValue, i > 0 else {
        throw FrontendError(file: path, key: k, "must be a positive integer")
      }
      return i
    }
    func double(_ k: String, _ dv: Double) throws(FrontendError) -> Double {
      guard let v = j[k], v != .null else { return dv }
      guard let d = v.doubleValue else {
        throw FrontendError(file: path, key: k, "must be a number")
      }
      return d
    }
    if let act = j["hidden_act"]?.stringValue, act != "silu" {
      throw FrontendError(
        file: path, key: "hidden_act", "activation '\(act)' is not supported (supported: silu)")
    }
    if j["mlp_bias"]?.boolValue == true {
      throw FrontendError(file: path, key: "mlp_bias", "MLP biases are not supported")
    }
    let hidden = try int("hidden_size")
    let heads = try int("num_attention_heads")
    var theta = try double("rope_theta", 10000)
    if let rp = j["rope_parameters"], let t = rp["rope_theta"]?.doubleValue { theta = t }
    if let rp = j["rope_parameters"], let t = rp["full_attention"]?["rope_theta"]?.doubleValue {
      theta = t
    }
    var c = LlamaConfig(
      modelType: mt, hiddenSize: hidden, intermediateSize: try int("intermediate_size"),
      numHiddenLayers: try int("num_hidden_layers"), numAttentionHeads: heads,
      numKeyValueHeads: try int("num_key_value_heads", heads),
      headDim: try int("head_dim", hidden / heads),
      rmsNormEps: try double("rms_norm_eps", 1e-6), ropeTheta: theta,
      vocabSize: try int("vocab_size"),
      maxPositionEmbeddings: try int("max_position_embeddings", 2048),
      tieWordEmbeddings: j["tie_word_embeddings"]?.boolValue ?? false)
    if let (k, m) = c.sizeProblem { throw FrontendError(file: path, key: k, m) }
    guard c.numAttentionHeads % c.numKeyValueHeads == 0 else {
      throw FrontendError(
        file: path, key: "num_key_value_heads",
        "\(c.numKeyValueHeads) does not divide num_attention_heads \(c.numAttentionHeads)")
    }
    c.bosTokenId = j["bos_token_id"]?.intValue
    c.eosTokenId = j["eos_token_id"]?.intValue
    let scalingKey = j["rope_scaling"].map { _ in "rope_scaling" } ?? "rope_parameters"
    if let rs = j[scalingKey], rs != .null {
      let type = rs["rope_type"]?.stringValue ?? rs["type"]?.stringValue ?? "default"
      switch type {
      case "default": break
      case "llama3":
        func p(_ k: String) throws(FrontendError) -> Double {
          guard let v = rs[k]?.doubleValue else {
            throw FrontendError(
              file: path, key: "\(scalingKey).\(k)", "missing (required for llama3 rope scaling)")
          }
          return v
        }
        guard let orig = rs["original_max_position_embeddings"]?.intValue else {
          throw FrontendError(
            file: path, key: "\(scalingKey).original_max_position_embeddings",
            "missing (required for llama3 rope scaling)")
        }
        c.ropeScaling = LlamaConfig.Llama3Scaling(
          factor: try p("factor"), lowFreqFactor: try p("low_freq_factor"),
          highFreqFactor: try p("high_freq_factor"),
          originalMaxPositionEmbeddings: orig)
      default:
        throw FrontendError(
          file: path, key: "\(scalingKey).rope_type",
          "rope scaling '\(type)' is not supported (supported: default, llama3)")
      }
    }
    if familyModelTypes.contains(mt) {
      c.family = try readFamily(j, modelType: mt, config: c, path: path)
    }
    return c
  }
}
