import QoptIR

/// A reference output's listing (`../shared/data/formats/*.md`): its `quantization_config`
/// (the ```json block) and its tensor table (`| name | dtype | shape |` rows), so tests can
/// compare what qopt writes with what the reference wrote.
public struct FormatListing {
  public var quantizationConfig: JSON
  /// name → (safetensors dtype, shape).
  public var tensors: [String: (dtype: String, shape: [Int])]

  public init(path: String) throws {
    let text = String(decoding: try readFile(path), as: UTF8.self)
    guard let open = text.firstRange(of: "```json\n"), let close = text[open.upperBound...].firstRange(of: "\n```") else {
      throw StorageError(file: path, offset: nil, message: "no ```json block")
    }
    quantizationConfig = try JSON.parse(Array(text[open.upperBound..<close.lowerBound].utf8))
    tensors = [:]
    for line in text.split(separator: "\n") where line.hasPrefix("| ") && !line.hasPrefix("| name") {
      let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: " ") }
      guard cells.count == 3, cells[2].hasPrefix("[") else { continue }
      let dims = cells[2].dropFirst().dropLast().split(separator: ",").compactMap { Int($0.trimmingCharacters(in: " ")) }
      tensors[cells[0]] = (cells[1], dims)
    }
  }

  /// The listed names: block 0 and the non-block tensors.
  public func covers(_ name: String) -> Bool {
    name.hasPrefix("model.layers.0.") || !name.hasPrefix("model.layers.")
  }
}

extension Substring {
  fileprivate func trimmingCharacters(in c: Character) -> String {
    var s = self
    while s.first == c { s.removeFirst() }
    while s.last == c { s.removeLast() }
    return String(s)
  }
}
