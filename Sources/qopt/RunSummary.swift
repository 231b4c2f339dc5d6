import QoptIR
import QoptPasses
import QoptRuntime

#if canImport(Glibc)
  import Glibc
#endif

/// The closing summary of a run that wrote an output (stderr, silenced by `-quiet`): weights
/// per scheme, what stayed float and why, output size, wall time and peak memory — the lines
/// llama-quantize and llm-compressor users look for.
enum RunSummary {
  static func text(_ module: Module, output: String, format: String, seconds: Double) -> String {
    var perScheme: [(String, Int, Int)] = []  // scheme, weights, parameters
    var float: [(String, Int, String)] = []  // reason, weights, an example
    let embeddings = Set(
      module.allOps.filter { $0.kind == .embedding }.compactMap {
        $0.operands[1].definingOp?.paramName
      })
    let linears = Set(
      module.allOps.filter { $0.kind == .linear }.compactMap {
        $0.operands[1].definingOp?.paramName
      })
    let routers = Set(
      module.allOps.filter { $0.kind == .moeRoute }.compactMap { $0.operands.first?.definingOp }
        .filter { $0.kind == .linear }.compactMap { $0.operands[1].definingOp?.paramName })
    var seen = Set<String>()
    for op in module.allOps {
      guard let name = op.paramName, seen.insert(name).inserted, let entry = module.weights[name]
      else { continue }
      switch entry {
      case .quantized(let q):
        let s = SchemeName.short(q.scheme)
        let n = q.shape.reduce(1, *)
        if let i = perScheme.firstIndex(where: { $0.0 == s }) {
          perScheme[i].1 += 1
          perScheme[i].2 += n
        } else {
          perScheme.append((s, 1, n))
        }
      case .dense(let t):
        let module = name.hasSuffix(".weight") ? String(name.dropLast(7)) : name
        let why: String
        if t.shape.count < 2 {
          why = "1-D (norms, biases): kept in float as every recipe does"
        } else if embeddings.contains(name) {
          why =
            linears.contains(name)
            ? "embedding table, tied to the output head: kept in float (not a Linear target)"
            : "embedding table: kept in float (not a Linear target)"
        } else if module.hasSuffix("lm_head") || module == "output" {
          why = "output head: kept in float (not a Linear target)"
        } else if routers.contains(name) {
          why =
            "MoE router: kept in float (not a Linear target; llm-compressor recipes ignore mlp.gate)"
        } else if linears.contains(name) {
          why = "linear weight no pass selected (targets/ignore, or no quantization pass)"
        } else {
          why = "not a linear weight"
        }
        if let i = float.firstIndex(where: { $0.0 == why }) {
          float[i].1 += 1
        } else {
          float.append((why, 1, name))
        }
      }
    }
    var out = "qopt summary:\n"
    if perScheme.isEmpty {
      out += "  quantized: nothing\n"
    }
    for (s, n, p) in perScheme {
      out += "  quantized: \(n) weight\(n == 1 ? "" : "s") as \(s) (\(count(p)) parameters)\n"
    }
    for (why, n, example) in float {
      out += "  float: \(n) weight\(n == 1 ? "" : "s"), e.g. \(example): \(why)\n"
    }
    if let bpw = module.attributes["assign_schemes.bpw"]?.doubleValue,
      let b = module.attributes["assign_schemes.bytes"]?.intValue
    {
      out +=
        "  assign-schemes: \((bpw * 10000).rounded() / 10000) bits per assigned weight, \(b) bytes of tensor data\n"
    }
    out += "  output: \(output) (\(format)), \(bytes(sizeOnDisk(output, format: format)))\n"
    out +=
      "  wall time \(Progress.duration(seconds)), peak memory \(bytes(Int(peakRSSMegabytes() * 1_048_576)))\n"
    return out
  }

  /// Bytes written: the file, the directory's files, or an `.ir` file and its sidecar.
  static func sizeOnDisk(_ path: String, format: String) -> Int {
    var total = fileSize(path)
    if format == "ir", path.hasSuffix(".ir") {
      total += fileSize(String(path.dropLast(3)) + ".safetensors")
    }
    return total
  }

  static func fileSize(_ path: String) -> Int {
    guard let dir = opendir(path) else {
      var st = stat()
      return stat(path, &st) == 0 ? Int(st.st_size) : 0
    }
    defer { closedir(dir) }
    var total = 0
    while let e = readdir(dir) {
      let name = withUnsafeBytes(of: e.pointee.d_name) {
        String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
      }
      if name == "." || name == ".." { continue }
      total += fileSize(path + "/" + name)
    }
    return total
  }

  static func bytes(_ n: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n)
    var u = 0
    while v >= 1024 && u < units.count - 1 {
      v /= 1024
      u += 1
    }
    return u == 0 ? "\(n) B" : "\(Int(v * 10) / 10).\(Int(v * 10) % 10) \(units[u])"
  }

  static func count(_ n: Int) -> String {
    if n >= 1_000_000 {
      return "\(Int(Double(n) / 100_000) / 10).\(Int(Double(n) / 100_000) % 10) M"
    }
    if n >= 1000 { return "\(Int(Double(n) / 100) / 10).\(Int(Double(n) / 100) % 10) k" }
    return "\(n)"
  }
}
