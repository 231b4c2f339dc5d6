import QoptIR

extension Module {
  /// The tokenizer.json bytes the frontend stored with the model, if any.
  public var tokenizerJSON: [UInt8]? {
    guard let name = attributes["tokenizer"]?.symbolValue, let t = weights.dense(name) else {
      return nil
    }
    return t.bytes
  }
}
