/// Parsing `importance` declarations (docs/ir.md, "Importance statistics"):
///
///     importance @"model.layers.0.mlp.down_proj.weight" {tokens = [16384]} : tensor<1x1536xf32>
///     importance @w {tokens = [3]} : tensor<1x2xf32> = dense<[1.5, 2.0]>
///
/// The type is `experts × columns` f32 with one token count per expert. Without inline data
/// the sums come from the sidecar (`name#in_sum2`) when the module is loaded from a file.
extension Parser {
  mutating func parseImportance(into module: Module) throws(ParseError) {
    let loc = c.location
    try expectKeyword("importance")
    c.skipTrivia()
    let name = try parseSymbol()
    let attrs = try parseAttributeDict()
    if let extra = attrs.keys.first(where: { $0 != "tokens" }) {
      throw ParseError(
        .typeMismatch("importance @\(name): unknown attribute '\(extra)' (only 'tokens')"), at: loc)
    }
    guard let list = attrs["tokens"]?.arrayValue else {
      throw ParseError(
        .typeMismatch("importance @\(name) needs 'tokens = [N, …]', one count per expert"), at: loc)
    }
    var tokens: [Int] = []
    for item in list {
      guard let n = item.intValue, n >= 0 else {
        throw ParseError(
          .typeMismatch("importance @\(name): token counts must be integers ≥ 0"), at: loc)
      }
      tokens.append(n)
    }
    try expect(":")
    let tloc = c.location
    let t = try parseType()
    guard t.rank == 2, t.isStatic, t.element.dtype == .f32, let experts = t.shape[0],
      let columns = t.shape[1],
      experts > 0, columns > 0
    else {
      throw ParseError(
        .typeMismatch(
          "importance @\(name) must have type tensor<EXPERTSxCOLUMNSxf32>, found \(Printer.type(t))"
        ), at: tloc)
    }
    guard tokens.count == experts else {
      throw ParseError(
        .typeMismatch(
          "importance @\(name) has \(tokens.count) token counts for \(experts) experts"), at: loc)
    }
    guard module.importance[name] == nil else {
      throw ParseError(.duplicate("importance @\(name) is declared twice"), at: loc)
    }
    var sums: [Float] = []
    if consume("=") {
      let dloc = c.location
      try expectKeyword("dense")
      try expect("<")
      try expect("[")
      c.skipTrivia()
      if c.peek != UInt8(ascii: "]") {
        repeat {
          c.skipTrivia()
          sums.append(Float(try parseNumberLiteral().double))
        } while consume(",")
      }
      try expect("]")
      try expect(">")
      guard sums.count == experts * columns else {
        throw ParseError(
          .typeMismatch(
            "dense<…> has \(sums.count) values but \(Printer.type(t)) holds \(experts * columns)"),
          at: dloc)
      }
    }
    module.importance[name] = ImportanceStats(columns: columns, sumSquares: sums, tokens: tokens)
  }
}
