import QoptIR

/// Splits tensors into safetensors shards as huggingface_hub's
/// `split_torch_state_dict_into_shards` does: in order, a new shard starts when the next tensor
/// would push the current one past `maxShardSize`; a tensor larger than the limit gets a shard
/// of its own. One shard is written as `model.safetensors`; several as
/// `model-0000i-of-0000n.safetensors` with `model.safetensors.index.json`.
struct ShardPlan {
  var shards: [[SafetensorsEntry]] = []

  init(_ entries: [SafetensorsEntry], maxShardSize: Int) {
    var current: [SafetensorsEntry] = []
    var size = 0
    for e in entries {
      let n = e.shape.reduce(1, *) * e.dtype.byteSize
      if n > maxShardSize {
        shards.append([e])
        continue
      }
      if !current.isEmpty && size + n > maxShardSize {
        shards.append(current)
        current = []
        size = 0
      }
      current.append(e)
      size += n
    }
    if !current.isEmpty || shards.isEmpty { shards.append(current) }
  }

  func fileName(_ i: Int) -> String {
    guard shards.count > 1 else { return "model.safetensors" }
    return "model-\(pad5(i + 1))-of-\(pad5(shards.count)).safetensors"
  }

  /// `model.safetensors.index.json`: total tensor bytes and the sorted name → file map.
  var index: JSON {
    var total = 0
    var map: [(String, JSON)] = []
    for (i, s) in shards.enumerated() {
      for e in s {
        total += e.shape.reduce(1, *) * e.dtype.byteSize
        map.append((e.name, .string(fileName(i))))
      }
    }
    map.sort { $0.0 < $1.0 }
    return .object([("metadata", .object([("total_size", .int(total))])), ("weight_map", .object(map))])
  }

  private func pad5(_ n: Int) -> String {
    let s = String(n)
    return String(repeating: "0", count: max(0, 5 - s.count)) + s
  }
}
