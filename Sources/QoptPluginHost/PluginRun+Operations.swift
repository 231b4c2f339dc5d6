import CQoptPlugin
import QoptIR
import QoptPasses

/// The host functions that do more than look a handle up: attributes, weights, diagnostics
/// and op creation. Every mutation goes through the run's `PassContext`.
extension PluginRun {
  // MARK: - Attributes

  /// The attributes of the op `o`, or of the module when `o` is NULL; nil for a bad handle.
  func attributes(_ o: OpaquePointer?) -> AttributeDict? {
    guard let o else { return module.attributes }
    return op(o)?.attributes
  }

  static func getAttribute(
    _ m: OpaquePointer?, _ o: OpaquePointer?, _ k: UnsafePointer<CChar>?, _ read: (Attribute) -> Int32
  ) -> Int32 {
    guard let r = from(m), let k, let dict = r.attributes(o) else { return QOPT_ERR_INVALID_ARGUMENT }
    guard let a = dict[String(cString: k)] else { return QOPT_ERR_NOT_FOUND }
    return read(a)
  }

  static func setAttribute(_ m: OpaquePointer?, _ o: OpaquePointer?, _ k: UnsafePointer<CChar>?, _ value: Attribute) -> Int32 {
    guard let r = from(m), let k else { return QOPT_ERR_INVALID_ARGUMENT }
    return r.setAttribute(o, String(cString: k), value)
  }

  func setAttribute(_ o: OpaquePointer?, _ key: String, _ value: Attribute?) -> Int32 {
    guard !key.isEmpty else { return QOPT_ERR_INVALID_ARGUMENT }
    if o == nil {
      module.attributes[key] = value
      context.markChanged()
      return QOPT_OK
    }
    guard let op = op(o) else { return QOPT_ERR_INVALID_ARGUMENT }
    // The printer writes `name` of a param and `callee` of a call in their custom form.
    if (op.kind == .param && key == "name") || (op.kind == .call && key == "callee") { return QOPT_ERR_INVALID_ARGUMENT }
    context.setAttribute(key, value, on: op)
    return QOPT_OK
  }

  /// An attribute from its IR text form, read through the public module parser (as the
  /// value of a module attribute); a parse error is reported to the user as a warning.
  func parseAttribute(_ text: String) -> Attribute? {
    do {
      return try Parser.parse("module attributes {a = \(text)}\n", file: "<attribute>").attributes["a"]
    } catch {
      context.diagnose(Diagnostic(.warning, "\(passName): attribute text '\(text)' does not parse: \(error.description)"))
      return nil
    }
  }

  // MARK: - Weights

  func readWeight(_ name: String, into out: UnsafeMutablePointer<qopt_f32_view>) -> Int32 {
    guard let entry = module.weights[name] else { return QOPT_ERR_NOT_FOUND }
    let shape = entry.shape
    guard shape.count <= Int(QOPT_MAX_RANK) else { return QOPT_ERR_TYPE_MISMATCH }
    let buffer = floatBuffer(shape.reduce(1, *))
    switch entry {
    case .dense(let t):
      // A weight decoded on first use (a GGUF import) is decoded straight into the view, so
      // a read-only pass does not leave a decoded f32 copy behind in the weight store.
      if !(shape.count == 2 && buffer.count > 0 && t.decodeRows(0..<shape[0], into: buffer.baseAddress!)) {  // safe: count > 0
        t.readFloats(into: buffer)
      }
    case .quantized(let q):
      guard shape.count == 2 else { return QOPT_ERR_TYPE_MISMATCH }
      _ = buffer.initialize(from: q.dequantized())
    }
    return describe(buffer, shape: shape, into: out)
  }

  /// Fills `out` with a read-only view of `buffer` (row-major, `shape`).
  func describe(
    _ buffer: UnsafeMutableBufferPointer<Float>, shape: [Int],
    into out: UnsafeMutablePointer<qopt_f32_view>
  ) -> Int32 {
    var view = qopt_f32_view()
    view.data = UnsafePointer(buffer.baseAddress)
    view.count = Int64(buffer.count)
    view.rank = Int32(shape.count)
    withUnsafeMutableBytes(of: &view.dims) { raw in
      let dims = raw.bindMemory(to: Int64.self)
      for (i, d) in shape.enumerated() { dims[i] = Int64(d) }
    }
    out.pointee = view
    return QOPT_OK
  }

  func writeWeight(
    _ name: String, _ data: UnsafePointer<Float>?, _ count: Int64, _ rank: Int32, _ dims: UnsafePointer<Int64>?,
    _ code: Int32
  ) -> Int32 {
    guard let data, count >= 0, rank >= 0, rank <= QOPT_MAX_RANK, rank == 0 || dims != nil else {
      return QOPT_ERR_INVALID_ARGUMENT
    }
    // safe: dims is non-nil when rank > 0 (checked above).
    let raw = (0..<Int(rank)).map { dims![$0] }
    guard let elements = elementCount(raw) else {
      diagnose(
        severity: QOPT_SEVERITY_ERROR, op: nil,
        message: "weight_write_f32 '\(name)': dims \(raw) are negative or their product overflows")
      return QOPT_ERR_INVALID_ARGUMENT
    }
    let shape = raw.map { Int($0) }
    guard elements == Int(count) else { return QOPT_ERR_INVALID_ARGUMENT }
    var target: DType
    switch module.weights[name] {
    case .quantized?: return QOPT_ERR_TYPE_MISMATCH
    case .dense(let old)?:
      guard old.shape == shape else { return QOPT_ERR_TYPE_MISMATCH }
      target = old.dtype
      if code != QOPT_DTYPE_KEEP && dtype(fromC: code) != old.dtype { return QOPT_ERR_TYPE_MISMATCH }
    case nil:
      target = code == QOPT_DTYPE_KEEP ? .f32 : (dtype(fromC: code) ?? .i8)
    }
    guard [.f32, .f16, .bf16].contains(target) else { return QOPT_ERR_TYPE_MISMATCH }
    let values = Array(UnsafeBufferPointer(start: data, count: Int(count)))
    context.setWeight(name, .dense(TensorData(floats: values, shape: shape, as: target)))
    return QOPT_OK
  }

  func setQuantized(_ name: String, _ qp: UnsafePointer<qopt_int_quant>) -> Int32 {
    guard qp.pointee.struct_size >= UInt32(MemoryLayout<qopt_int_quant>.stride) else { return QOPT_ERR_INVALID_ARGUMENT }
    let q = qp.pointee
    guard let weight = module.weights.dense(name) else {
      return module.weights[name] == nil ? QOPT_ERR_NOT_FOUND : QOPT_ERR_TYPE_MISMATCH
    }
    guard weight.shape.count == 2, Int64(weight.shape[0]) == q.rows, Int64(weight.shape[1]) == q.cols else {
      return QOPT_ERR_TYPE_MISMATCH
    }
    guard (2...8).contains(q.bits), q.group_size >= -1, let scaleType = dtype(fromC: q.scale_dtype),
      [.f32, .f16, .bf16].contains(scaleType), let codesPtr = q.codes, let scalesPtr = q.scales,
      (q.symmetric != 0) == (q.zero_points == nil)
    else { return QOPT_ERR_INVALID_ARGUMENT }
    let (rows, cols) = (Int(q.rows), Int(q.cols))
    let granularity: Granularity = switch q.group_size {
    case -1: .channel
    case 0: .tensor
    default: .group(Int(q.group_size))
    }
    let scheme = IntScheme(bits: Int(q.bits), symmetric: q.symmetric != 0, granularity: granularity, scaleType: scaleType)
    let codes = Array(UnsafeBufferPointer(start: codesPtr, count: rows * cols))
    guard codes.allSatisfy({ Int($0) >= scheme.qmin && Int($0) <= scheme.qmax }) else { return QOPT_ERR_INVALID_ARGUMENT }
    let scaleShape = granularity == .tensor ? [1] : [rows, granularity.groupsPerRow(columns: cols)]
    let n = scaleShape.reduce(1, *)
    let scales = Array(UnsafeBufferPointer(start: scalesPtr, count: n))
    guard scales.allSatisfy(\.isFinite) else { return QOPT_ERR_INVALID_ARGUMENT }
    let zeros = q.zero_points.map { TensorData(int8: Array(UnsafeBufferPointer(start: $0, count: n)), shape: scaleShape) }
    let tensor = QuantizedTensor(
      scheme: .int(scheme), codes: TensorData(int8: codes, shape: [rows, cols]),
      scale: TensorData(floats: scales, shape: scaleShape, as: scaleType), zeroPoint: zeros)
    context.setWeight(name, .quantized(tensor))
    for op in module.allOps where op.paramName == name {
      if let res = op.result { context.retype(res, to: res.type.with(element: .quantized(.int(scheme)))) }
    }
    return QOPT_OK
  }

  /// The product of plugin-supplied `dims`, or nil when one is negative or the product does
  /// not fit an `Int`: the host never traps on a plugin's sizes.
  func elementCount(_ dims: [Int64]) -> Int? {
    var n = 1
    for d in dims {
      guard d >= 0 else { return nil }
      let (p, overflow) = n.multipliedReportingOverflow(by: Int(d))
      guard !overflow else { return nil }
      n = p
    }
    return n
  }

  // MARK: - Diagnostics

  func diagnose(severity: Int32, op: Op?, message: String) {
    let located = op.map { $0.location == nil ? "\($0.path): \(message)" : message } ?? message
    switch severity {
    case QOPT_SEVERITY_ERROR:
      errors.append(Diagnostic(.error, located, at: op?.location))
    case QOPT_SEVERITY_WARNING:
      context.diagnose(Diagnostic(.warning, "\(passName): \(located)", at: op?.location))
    default:
      context.diagnose(Diagnostic(.remark, "\(passName): \(located)", at: op?.location))
    }
  }

  // MARK: - Rewriting

  func createOp(
    in f: Function, anchor: OpaquePointer?, where position: Int32, name: String, operands: [Value],
    result: qopt_type_desc?, hint: String?
  ) -> OpaquePointer? {
    guard !name.isEmpty, OpKind(rawValue: name) == nil else { return nil }
    var type: TensorType?
    if let result {
      guard let d = dtype(fromC: result.dtype), result.rank >= 0, result.rank <= QOPT_MAX_RANK,
        result.rank == 0 || result.dims != nil
      else { return nil }
      var shape: [Int?] = []
      for i in 0..<Int(result.rank) {
        // safe: dims is non-nil when rank > 0 (checked above).
        let dim = result.dims![i]
        guard dim >= -1 else { return nil }
        shape.append(dim < 0 ? nil : Int(dim))
      }
      // A static shape whose element count overflows would trap wherever it is sized later.
      guard elementCount(shape.compactMap { $0.map(Int64.init) }) != nil else {
        diagnose(severity: QOPT_SEVERITY_ERROR, op: nil, message: "op_create '\(name)': the result's element count overflows")
        return nil
      }
      type = TensorType(shape, d)
    }
    var builder: Builder
    switch position {
    case QOPT_INSERT_BEFORE, QOPT_INSERT_AFTER:
      guard let a = op(anchor), a.parent === f else { return nil }
      builder = position == QOPT_INSERT_BEFORE ? context.builder(before: a) : context.builder(after: a)
    case QOPT_INSERT_AT_END:
      if let ret = f.returnOp { builder = context.builder(before: ret) } else {
        context.markChanged()
        builder = Builder(atEndOf: f)
      }
    default:
      return nil
    }
    let created = builder.create(name, operands, result: type, named: hint.flatMap { $0.isEmpty ? nil : $0 } ?? "v")
    return handle(created)
  }

  func replaceUses(of old: Value, with new: Value) -> Int32 {
    let f = old.definingOp?.parent ?? module.functions.first { fn in fn.arguments.contains { $0 === old } }
    guard let f, new.definingOp.map({ $0.parent === f }) ?? f.arguments.contains(where: { $0 === new }) else {
      return QOPT_ERR_INVALID_ARGUMENT
    }
    // The body is straight-line: only ops after new's definition may read it.
    let start = new.definingOp.flatMap { f.index(of: $0).map { $0 + 1 } } ?? 0
    for op in f.body[start...] {
      for i in op.operands.indices where op.operands[i] === old {
        op.operands[i] = new
        context.markChanged()
      }
    }
    return QOPT_OK
  }
}
