#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Llama 3 rope scaling as llama.cpp stores it: a `rope_freqs.weight` tensor of one divisor per
/// rotated pair, which llama.cpp applies to the base frequencies `θ^(-2i/d)`. Computed as
/// `LlamaModel.generate_extra_tensors` in llama.cpp's conversion/llama.py does, in float32
/// like its torch tensors.
enum LlamaRopeFreqs {
  /// The factors for config.json's `rope_scaling` of type llama3 (nil for any other).
  static func factors(_ config: ModelConfig) -> [Float]? {
    guard let rs = config.json["rope_scaling"] ?? config.json["rope_parameters"],
      (rs["rope_type"] ?? rs["type"])?.stringValue?.lowercased() == "llama3"
    else { return nil }
    let base = Float(rs["rope_theta"]?.doubleValue ?? config.double("rope_theta") ?? 10000)
    guard let heads = config.int("num_attention_heads"), heads > 0,
      let dim = config.int("head_dim") ?? config.int("hidden_size").map({ $0 / heads }), dim > 1
    else { return nil }
    let factor = Float(rs["factor"]?.doubleValue ?? 8)
    let low = Float(rs["low_freq_factor"]?.doubleValue ?? 1)
    let high = Float(rs["high_freq_factor"]?.doubleValue ?? 4)
    let old = Float(rs["original_max_position_embeddings"]?.intValue ?? 8192)
    let lowWavelen = old / low, highWavelen = old / high
    return stride(from: 0, to: dim, by: 2).map { i -> Float in
      let freq = 1 / powf(base, Float(i) / Float(dim))
      let wavelen = 2 * Float.pi / freq
      if wavelen < highWavelen { return 1 }
      if wavelen > lowWavelen { return factor }
      let smooth = (old / wavelen - low) / (high - low)
      return 1 / ((1 - smooth) / factor + smooth)
    }
  }
}
