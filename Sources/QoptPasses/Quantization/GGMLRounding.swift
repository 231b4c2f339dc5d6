import QoptIR

/// What `rtn` and `gptq` share when the scheme is a ggml block codec: the type a row length
/// takes (llama.cpp's fallback, announced) and the importance weights llama-quantize would use.
enum GGMLRounding {
  /// `kind`, or llama-quant.cpp's fallback type when `kind`'s block does not divide the row
  /// (with a remark), or nil when no block does (the weight stays float, with a remark:
  /// llama.cpp would write it as F16).
  static func kind(
    _ kind: GGMLBlockKind, columns: Int, name: String, param: Op, context: PassContext
  ) -> GGMLBlockKind? {
    guard let k = kind.fallback(rowLength: columns) else {
      context.remark(
        "\(Printer.symbol(name)): a row of \(columns) weights fills no whole \(kind.name) or 32-weight block; left in float (llama.cpp writes such a tensor as F16)",
        at: param)
      return nil
    }
    if k != kind {
      context.remark(
        "\(Printer.symbol(name)): a row of \(columns) weights does not fill whole \(kind.name) blocks of \(kind.blockSize); quantized as \(k.name) instead (llama.cpp's fallback)",
        at: param)
    }
    return k
  }

  /// The per-column weights llama-quantize hands ggml's encoder for `name` (mean x² from the
  /// module's importance matrix: `calibrate`, or `-imatrix=FILE`), or nil when there is none.
  static func importance(
    _ module: Module, name: String, columns: Int, param: Op
  ) throws -> [Float]? {
    guard let stats = module.importance[name], stats.isResolved else { return nil }
    guard stats.columns == columns, stats.experts == 1 else {
      throw PassError(
        "the importance matrix row of \(Printer.symbol(name)) has \(stats.columns) columns × \(stats.experts) experts; the weight has \(columns) columns",
        at: param.location)
    }
    return stats.columnWeights()
  }
}
