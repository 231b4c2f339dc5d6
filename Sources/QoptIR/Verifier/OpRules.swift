/// The verifier rule of each known op: operand count, element types, shapes and attributes.
/// Each returns the problems it found as messages (empty when the op is valid).
public enum OpRules {
  /// The problems with a quantized tensor's parts (shapes, dtypes) against its scheme.
  public static func quantizedPartProblems(_ q: QuantizedTensor, name: String) -> [String] {
    checkQuantizedParts(q, name: name)
  }

  static func check(_ op: Op, module: Module) -> [String] {
    guard let kind = op.kind else { return [] }  // generic (plugin) ops carry no rules here
    var e: [String] = []
    let ops = op.operands.map(\.type)
    let res = op.result?.type
    func need(_ n: ClosedRange<Int>) -> Bool {
      if !n.contains(ops.count) {
        e.append(
          "expects \(n.lowerBound == n.upperBound ? "\(n.lowerBound)" : "\(n.lowerBound) to \(n.upperBound)") operands, found \(ops.count)"
        )
        return false
      }
      if kind != .return, res == nil { e.append("must have a result"); return false }
      return true
    }
    func intAttr(_ k: String, positive: Bool = true) -> Int? {
      guard let v = op.attributes[k]?.intValue else {
        e.append("needs an integer attribute '\(k)'"); return nil
      }
      if positive && v <= 0 {
        e.append("attribute '\(k)' must be positive, found \(v)"); return nil
      }
      return v
    }
    func floatAttr(_ k: String) -> Double? {
      guard let v = op.attributes[k]?.doubleValue else {
        e.append("needs a float attribute '\(k)'"); return nil
      }
      return v
    }
    func isF32Activation(_ t: TensorType, _ what: String) -> Bool {
      guard t.element == .plain(.f32) else {
        e.append("\(what) must be an f32 tensor, found \(Printer.type(t))"); return false
      }
      return true
    }
    func same(_ a: TensorType, _ b: TensorType, _ what: String) {
      if !a.isCompatible(with: b) {
        e.append("\(what): \(Printer.type(a)) and \(Printer.type(b)) differ")
      }
    }
    func dimEq(_ a: Int?, _ b: Int?) -> Bool { a == nil || b == nil || a == b }

    switch kind {
    case .param:
      guard ops.isEmpty, let res else { e.append("takes no operands and has one result"); break }
      if op.attributes["name"]?.symbolValue == nil { e.append("needs a weight name") }
      if !res.isStatic {
        e.append("result type must have a static shape, found \(Printer.type(res))")
      }
      if res.isQuantized && res.rank != 2 {
        e.append("a quantized weight must be 2-D, found \(Printer.type(res))")
      }
      if case .ggml(let k)? = res.element.scheme, res.rank == 2, let cols = res.shape[1],
        cols % k.blockSize != 0
      {
        e.append(
          "\(k.name) packs rows in blocks of \(k.blockSize); a row of \(cols) weights does not fill whole blocks"
        )
      }
      if case .failure(let why) = AssignedScheme.of(op) { e.append(why.message) }
    case .embedding:
      guard need(2...2), let res else { break }
      let (ids, table) = (ops[0], ops[1])
      if ids.rank != 1 || ids.element != .plain(.i32) {
        e.append("ids must be a 1-D i32 tensor, found \(Printer.type(ids))")
      }
      if table.rank != 2 { e.append("table must be 2-D, found \(Printer.type(table))") }
      if table.isQuantized == false && !table.element.isFloat {
        e.append("table must hold floats, found \(Printer.type(table))")
      }
      if isF32Activation(res, "result"), table.rank == 2, ids.rank == 1 {
        if res.rank != 2 || !dimEq(res.shape[0], ids.shape[0])
          || !dimEq(res.shape[1], table.shape[1])
        {
          e.append(
            "result must be [tokens, \(table.shape[1].map(String.init) ?? "?")], found \(Printer.type(res))"
          )
        }
      }
    case .rmsNorm:
      guard need(2...2), let res else { break }
      if isF32Activation(ops[0], "input") {
        if ops[1].rank != 1 || !ops[1].element.isFloat {
          e.append("weight must be a 1-D float tensor, found \(Printer.type(ops[1]))")
        } else if let last = ops[0].shape.last ?? nil, let n = ops[1].shape[0], n > 0, last % n != 0
        {
          e.append("weight length \(n) does not divide the input's last dimension \(last)")
        }
        same(res, ops[0], "result and input types")
      }
      if let eps = floatAttr("eps"), !(eps > 0) { e.append("attribute 'eps' must be positive") }
      if op.attributes["weight_offset"] != nil, op.attributes["weight_offset"]?.doubleValue == nil {
        e.append("attribute 'weight_offset' must be a number")
      }
    case .linear:
      guard need(2...3), let res else { break }
      if case .failure(let problem) = InputQuantization.parse(op.attributes) {
        e.append(problem.message)
      }
      let (x, w) = (ops[0], ops[1])
      guard isF32Activation(x, "input"), x.rank >= 1 else { break }
      if w.rank != 2 { e.append("weight must be 2-D [out, in], found \(Printer.type(w))"); break }
      if !w.isQuantized && !w.element.isFloat {
        e.append("weight must be float or quantized, found \(Printer.type(w))")
      }
      if !dimEq(x.shape.last ?? nil, w.shape[1]) {
        e.append(
          "input's last dimension \(x.shape.last.flatMap { $0 }.map(String.init) ?? "?") does not match the weight's in-features \(w.dims[1])"
        )
      }
      if ops.count == 3
        && (ops[2].rank != 1 || !dimEq(ops[2].shape[0], w.shape[0]) || !ops[2].element.isFloat)
      {
        e.append(
          "bias must be a 1-D float tensor of \(w.dims[0]) elements, found \(Printer.type(ops[2]))")
      }
      var expected = x.shape
      expected[expected.count - 1] = w.shape[0]
      if !TensorType(expected, .f32).isCompatible(with: res) {
        e.append(
          "result must be \(Printer.type(TensorType(expected, .f32))), found \(Printer.type(res))")
      }
    case .rope:
      guard need(1...1), let res else { break }
      guard isF32Activation(ops[0], "input") else { break }
      same(res, ops[0], "result and input types")
      if let hd = intAttr("head_dim") {
        if hd % 2 != 0 { e.append("attribute 'head_dim' must be even, found \(hd)") }
        if ops[0].rank != 2 {
          e.append("input must be [tokens, heads*head_dim], found \(Printer.type(ops[0]))")
        } else if let last = ops[0].shape[1], last % hd != 0 {
          e.append("last dimension \(last) is not a multiple of head_dim \(hd)")
        }
      }
      if let t = floatAttr("theta"), !(t > 0) { e.append("attribute 'theta' must be positive") }
      if op.attributes["rotary_dim"] != nil, let r = intAttr("rotary_dim"),
        let hd = op.attributes["head_dim"]?.intValue,
        r % 2 != 0 || r > hd
      {
        e.append("attribute 'rotary_dim' must be even and at most head_dim \(hd), found \(r)")
      }
    case .attention:
      guard need(3...3), let res else { break }
      guard ops.allSatisfy({ $0.element == .plain(.f32) && $0.rank == 2 }) else {
        e.append("q, k and v must be 2-D f32 tensors [tokens, heads*head_dim]"); break
      }
      guard let h = intAttr("heads"), let kvh = intAttr("kv_heads"), let d = intAttr("head_dim")
      else { break }
      if h % kvh != 0 { e.append("heads (\(h)) must be a multiple of kv_heads (\(kvh))") }
      if !dimEq(ops[0].shape[1], h * d) {
        e.append("q must have heads*head_dim = \(h * d) columns, found \(ops[0].dims[1])")
      }
      if !dimEq(ops[1].shape[1], kvh * d) {
        e.append("k must have kv_heads*head_dim = \(kvh * d) columns, found \(ops[1].dims[1])")
      }
      if !dimEq(ops[2].shape[1], kvh * d) {
        e.append("v must have kv_heads*head_dim = \(kvh * d) columns, found \(ops[2].dims[1])")
      }
      if !(dimEq(ops[0].shape[0], ops[1].shape[0]) && dimEq(ops[1].shape[0], ops[2].shape[0])) {
        e.append("q, k and v must have the same number of tokens")
      }
      same(res, ops[0], "result and q types")
      if op.attributes["sliding_window"] != nil { _ = intAttr("sliding_window") }
      for k in ["scale", "softcap"] where op.attributes[k] != nil {
        if let v = floatAttr(k), !(v > 0) { e.append("attribute '\(k)' must be positive") }
      }
    case .silu, .geluTanh:
      guard need(1...1), let res else { break }
      if isF32Activation(ops[0], "input") { same(res, ops[0], "result and input types") }
    case .mul, .add:
      guard need(2...2), let res else { break }
      if isF32Activation(ops[0], "lhs") {
        same(ops[0], ops[1], "operand types")
        same(res, ops[0], "result and operand types")
      }
    case .scale:
      guard need(1...1), let res else { break }
      if isF32Activation(ops[0], "input") { same(res, ops[0], "result and input types") }
      _ = floatAttr("factor")
    case .slice:
      guard need(1...1), let res else { break }
      guard isF32Activation(ops[0], "input"), ops[0].rank == 2 else {
        e.append("input must be a 2-D f32 tensor [tokens, columns]"); break
      }
      guard let start = op.attributes["start"]?.intValue, start >= 0 else {
        e.append("needs a non-negative integer attribute 'start'"); break
      }
      guard let size = intAttr("size") else { break }
      if let n = ops[0].shape[1], start + size > n {
        e.append("columns \(start)..<\(start + size) exceed the input's \(n)")
      }
      same(res, TensorType([ops[0].shape[0], size], .f32), "result and sliced types")
    case .moeRoute:
      guard need(1...1), let res else { break }
      guard isF32Activation(ops[0], "logits"), ops[0].rank == 2 else {
        e.append("logits must be [tokens, experts]"); break
      }
      same(res, ops[0], "result and logits types")
      if let k = intAttr("top_k"), let n = ops[0].shape[1], k > n {
        e.append("top_k \(k) exceeds the \(n) experts")
      }
      if op.attributes["normalize"]?.boolValue == nil {
        e.append("needs a boolean attribute 'normalize'")
      }
    case .moeDispatch:
      guard need(2...2), let res else { break }
      guard isF32Activation(ops[0], "input"), isF32Activation(ops[1], "route"), ops[0].rank == 2,
        ops[1].rank == 2
      else {
        e.append("input and route must be 2-D"); break
      }
      if !dimEq(ops[0].shape[0], ops[1].shape[0]) {
        e.append("input and route must have the same number of tokens")
      }
      if op.attributes["expert"]?.intValue == nil {
        e.append("needs an integer attribute 'expert'")
      }
      if let x = op.attributes["expert"]?.intValue, let n = ops[1].shape[1], x < 0 || x >= n {
        e.append("expert \(x) is outside the route's \(n) experts")
      }
      same(res, TensorType([nil, ops[0].shape[1]], .f32), "result and input row types")
    case .moeCombine:
      guard ops.count >= 2, let res else {
        e.append("takes a route and one output per expert"); break
      }
      guard isF32Activation(ops[0], "route"), ops[0].rank == 2 else {
        e.append("route must be 2-D"); break
      }
      if let n = ops[0].shape[1], ops.count - 1 != n {
        e.append("the route has \(n) experts but \(ops.count - 1) outputs are combined")
      }
      for (i, t) in ops.dropFirst().enumerated()
      where !t.isCompatible(with: TensorType([nil, res.shape.last ?? nil], .f32)) {
        e.append(
          "expert output #\(i) has type \(Printer.type(t)), expected rows of \(Printer.type(res))")
      }
      if res.rank != 2 || !dimEq(res.shape[0], ops[0].shape[0]) {
        e.append("result must have the route's tokens as rows")
      }
    case .call:
      guard let callee = op.callee else { e.append("needs a callee"); break }
      guard let f = module.function(named: callee) else {
        e.append("calls unknown function @\(callee)"); break
      }
      if f.arguments.count != ops.count {
        e.append("passes \(ops.count) operands but @\(callee) takes \(f.arguments.count)")
      } else {
        for (i, (a, t)) in zip(f.arguments, ops).enumerated() where !a.type.isCompatible(with: t) {
          e.append(
            "operand #\(i) has type \(Printer.type(t)) but @\(callee) expects \(Printer.type(a.type))"
          )
        }
      }
      if let res, !res.isCompatible(with: f.resultType) {
        e.append(
          "result type \(Printer.type(res)) does not match @\(callee)'s \(Printer.type(f.resultType))"
        )
      } else if res == nil {
        e.append("must have a result")
      }
    case .return:
      if res != nil { e.append("has no result") }
    case .quantize:
      guard need(1...1), let res else { break }
      if !ops[0].element.isFloat {
        e.append("input must be a float tensor, found \(Printer.type(ops[0]))")
      }
      if !res.isQuantized {
        e.append("result must be a quantized tensor, found \(Printer.type(res))")
      }
      if ops[0].shape != res.shape { e.append("input and result shapes differ") }
    case .dequantize:
      guard need(1...1), let res else { break }
      if !ops[0].isQuantized {
        e.append("input must be a quantized tensor, found \(Printer.type(ops[0]))")
      }
      if !res.element.isFloat {
        e.append("result must be a float tensor, found \(Printer.type(res))")
      }
      if ops[0].shape != res.shape { e.append("input and result shapes differ") }
    }
    return e
  }

  /// Shapes and dtypes of a quantized tensor's parts against its scheme.
  static func checkQuantizedParts(_ q: QuantizedTensor, name: String) -> [String] {
    var e: [String] = []
    let shape = q.codes.shape
    guard shape.count == 2 else { return ["quantized weight @\(name) must be 2-D, found \(shape)"] }
    if case .ggml(let k) = q.scheme {
      if q.codes.dtype != .u8 {
        e.append("ggml weight @\(name) blocks must be u8, found \(q.codes.dtype.rawValue)")
      }
      if shape[1] % k.blockBytes != 0 {
        e.append(
          "ggml weight @\(name) rows of \(shape[1]) bytes are not whole \(k.name) blocks of \(k.blockBytes) bytes"
        )
      }
      return e
    }
    let codeType: DType = if case .fp8 = q.scheme { .f8e4m3 } else { .i8 }
    if q.codes.dtype != codeType {
      e.append(
        "quantized weight @\(name) codes must be \(codeType.rawValue), found \(q.codes.dtype.rawValue)"
      )
    }
    switch q.scheme {
    case .int(let s):
      let expected =
        s.granularity == .tensor ? [1] : [shape[0], s.granularity.groupsPerRow(columns: shape[1])]
      if q.scale.shape != expected {
        e.append("quantized weight @\(name) scale has shape \(q.scale.shape), expected \(expected)")
      }
      if q.scale.dtype != s.scaleType {
        e.append(
          "quantized weight @\(name) scale is \(q.scale.dtype.rawValue), the scheme says \(s.scaleType.rawValue)"
        )
      }
      if s.symmetric && q.zeroPoint != nil {
        e.append("symmetric weight @\(name) must not have a zero point")
      }
      if !s.symmetric && q.zeroPoint?.shape != expected {
        e.append("asymmetric weight @\(name) needs a zero point of shape \(expected)")
      }
    case .nvfp4(let g):
      let expected = [shape[0], (shape[1] + g - 1) / g]
      if q.scale.shape != expected {
        e.append("quantized weight @\(name) scale has shape \(q.scale.shape), expected \(expected)")
      }
      if q.globalScale?.shape != [1] { e.append("nvfp4 weight @\(name) needs a [1] global scale") }
    case .ggml: break  // checked above
    case .fp8(let g):
      let expected: [Int] =
        switch g {
        case .tensor: [1]
        case .channel: [shape[0], 1]
        case .group(let n): [shape[0], (shape[1] + n - 1) / n]
        }
      if q.scale.shape != expected {
        e.append("quantized weight @\(name) scale has shape \(q.scale.shape), expected \(expected)")
      }
    }
    return e
  }
}
