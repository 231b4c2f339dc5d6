import CQoptPlugin
import QoptIR
import QoptPasses

/// The `qopt_host_api` table every plugin receives: C function pointers over the IR of the
/// run a module handle names. One table for the process, built once, never freed.
///
/// Each entry resolves its handles through `PluginRun` and answers "invalid" for anything it
/// cannot resolve; none of them traps on plugin input.
nonisolated(unsafe) let hostAPI: UnsafeMutablePointer<qopt_host_api> = {
  let p = UnsafeMutablePointer<qopt_host_api>.allocate(capacity: 1)
  p.initialize(to: makeHostAPI())
  return p
}()

private func str(_ p: UnsafePointer<CChar>?) -> String? { p.map { String(cString: $0) } }

private func makeHostAPI() -> qopt_host_api {
  var api = qopt_host_api()
  api.api_version = QOPT_PLUGIN_API_VERSION
  api.struct_size = UInt32(MemoryLayout<qopt_host_api>.stride)
  api.register_pass = { reg, decl in PluginRegistrar.registerPass(reg, decl) }
  api.register_kernel = { reg, decl in PluginRegistrar.registerKernel(reg, decl) }

  // MARK: Walking
  api.function_count = { m in PluginRun.from(m).map { Int64($0.module.functions.count) } ?? -1 }
  api.function_at = { m, i in
    guard let r = PluginRun.from(m), i >= 0, i < r.module.functions.count else { return nil }
    return r.handle(r.module.functions[Int(i)])
  }
  api.function_name = { m, f in
    guard let r = PluginRun.from(m), let fn = r.function(f) else { return nil }
    return r.cString(fn.name)
  }
  api.function_op_count = { m, f in
    guard let r = PluginRun.from(m), let fn = r.function(f) else { return -1 }
    return Int64(fn.body.count)
  }
  api.function_op_at = { m, f, i in
    guard let r = PluginRun.from(m), let fn = r.function(f), i >= 0, i < fn.body.count else { return nil }
    return r.handle(fn.body[Int(i)])
  }
  api.function_argument_count = { m, f in
    guard let r = PluginRun.from(m), let fn = r.function(f) else { return -1 }
    return Int64(fn.arguments.count)
  }
  api.function_argument = { m, f, i in
    guard let r = PluginRun.from(m), let fn = r.function(f), i >= 0, i < fn.arguments.count else { return nil }
    return r.handle(fn.arguments[Int(i)])
  }

  // MARK: Ops
  api.op_name = { m, o in
    guard let r = PluginRun.from(m), let op = r.op(o) else { return nil }
    return r.cString(op.name)
  }
  api.op_operand_count = { m, o in
    guard let r = PluginRun.from(m), let op = r.op(o) else { return -1 }
    return Int64(op.operands.count)
  }
  api.op_operand = { m, o, i in
    guard let r = PluginRun.from(m), let op = r.op(o), i >= 0, i < op.operands.count else { return nil }
    return r.handle(op.operands[Int(i)])
  }
  api.op_result = { m, o in
    guard let r = PluginRun.from(m), let res = r.op(o)?.result else { return nil }
    return r.handle(res)
  }
  api.op_param_name = { m, o in
    guard let r = PluginRun.from(m), let name = r.op(o)?.paramName else { return nil }
    return r.cString(name)
  }
  api.op_function = { m, o in
    guard let r = PluginRun.from(m), let f = r.op(o)?.parent else { return nil }
    return r.handle(f)
  }
  api.op_location = { m, o in
    guard let r = PluginRun.from(m), let op = r.op(o) else { return nil }
    return r.cString(op.location?.description ?? op.path)
  }

  // MARK: Values
  api.value_name = { m, v in
    guard let r = PluginRun.from(m), let val = r.value(v) else { return nil }
    return r.cString(val.name)
  }
  api.value_defining_op = { m, v in
    guard let r = PluginRun.from(m), let op = r.value(v)?.definingOp else { return nil }
    return r.handle(op)
  }
  api.value_dtype = { m, v in
    guard let r = PluginRun.from(m), let val = r.value(v) else { return -1 }
    return switch val.type.element {
    case .plain(let d): cDType(d)
    case .quantized: Int32(QOPT_DTYPE_QUANTIZED)
    }
  }
  api.value_rank = { m, v in
    guard let r = PluginRun.from(m), let val = r.value(v) else { return -1 }
    return Int32(val.type.rank)
  }
  api.value_dim = { m, v, i in
    guard let r = PluginRun.from(m), let val = r.value(v), i >= 0, i < val.type.rank else { return -1 }
    return Int64(val.type.shape[Int(i)] ?? -1)
  }
  api.value_type_text = { m, v in
    guard let r = PluginRun.from(m), let val = r.value(v) else { return nil }
    return r.cString(Printer.type(val.type))
  }

  // MARK: Attributes
  api.attr_count = { m, o in
    guard let r = PluginRun.from(m), let dict = r.attributes(o) else { return -1 }
    return Int64(dict.entries.count)
  }
  api.attr_key = { m, o, i in
    guard let r = PluginRun.from(m), let dict = r.attributes(o), i >= 0, i < dict.entries.count else { return nil }
    return r.cString(dict.entries[Int(i)].key)
  }
  api.attr_kind = { m, o, k in
    guard let r = PluginRun.from(m), let key = str(k), let a = r.attributes(o)?[key] else { return Int32(QOPT_ATTR_NONE) }
    return switch a {
    case .int: Int32(QOPT_ATTR_INT)
    case .float: Int32(QOPT_ATTR_FLOAT)
    case .bool: Int32(QOPT_ATTR_BOOL)
    case .string: Int32(QOPT_ATTR_STRING)
    case .symbol: Int32(QOPT_ATTR_SYMBOL)
    case .array: Int32(QOPT_ATTR_ARRAY)
    case .type: Int32(QOPT_ATTR_TYPE)
    }
  }
  api.attr_get_int = { m, o, k, out in
    PluginRun.getAttribute(m, o, k) { a in
      guard let v = a.intValue, let out else { return QOPT_ERR_TYPE_MISMATCH }
      out.pointee = Int64(v)
      return QOPT_OK
    }
  }
  api.attr_get_float = { m, o, k, out in
    PluginRun.getAttribute(m, o, k) { a in
      guard let v = a.doubleValue, let out else { return QOPT_ERR_TYPE_MISMATCH }
      out.pointee = v
      return QOPT_OK
    }
  }
  api.attr_get_bool = { m, o, k, out in
    PluginRun.getAttribute(m, o, k) { a in
      guard let v = a.boolValue, let out else { return QOPT_ERR_TYPE_MISMATCH }
      out.pointee = v ? 1 : 0
      return QOPT_OK
    }
  }
  api.attr_get_string = { m, o, k in
    guard let r = PluginRun.from(m), let key = str(k), let a = r.attributes(o)?[key],
      let s = a.stringValue ?? a.symbolValue
    else { return nil }
    return r.cString(s)
  }
  api.attr_get_text = { m, o, k in
    guard let r = PluginRun.from(m), let key = str(k), let a = r.attributes(o)?[key] else { return nil }
    return r.cString(Printer.attribute(a))
  }
  api.attr_set_int = { m, o, k, v in PluginRun.setAttribute(m, o, k, .int(Int(v))) }
  api.attr_set_float = { m, o, k, v in
    v.isFinite ? PluginRun.setAttribute(m, o, k, .float(v)) : QOPT_ERR_INVALID_ARGUMENT
  }
  api.attr_set_bool = { m, o, k, v in PluginRun.setAttribute(m, o, k, .bool(v != 0)) }
  api.attr_set_string = { m, o, k, v in
    guard let s = str(v) else { return QOPT_ERR_INVALID_ARGUMENT }
    return PluginRun.setAttribute(m, o, k, .string(s))
  }
  api.attr_set_symbol = { m, o, k, v in
    guard let s = str(v), !s.isEmpty else { return QOPT_ERR_INVALID_ARGUMENT }
    return PluginRun.setAttribute(m, o, k, .symbol(s))
  }
  api.attr_set_text = { m, o, k, t in
    guard let r = PluginRun.from(m), let key = str(k), let text = str(t) else { return QOPT_ERR_INVALID_ARGUMENT }
    guard let a = r.parseAttribute(text) else { return QOPT_ERR_INVALID_ARGUMENT }
    return r.setAttribute(o, key, a)
  }
  api.attr_remove = { m, o, k in
    guard let r = PluginRun.from(m), let key = str(k), r.attributes(o) != nil else { return QOPT_ERR_INVALID_ARGUMENT }
    guard r.attributes(o)?[key] != nil else { return QOPT_ERR_NOT_FOUND }
    return r.setAttribute(o, key, nil)
  }

  // MARK: Weights, statistics, diagnostics
  api.weight_read_f32 = { m, n, out in
    guard let r = PluginRun.from(m), let name = str(n), let out else { return QOPT_ERR_INVALID_ARGUMENT }
    return r.readWeight(name, into: out)
  }
  api.weight_write_f32 = { m, n, data, count, rank, dims, dtype in
    guard let r = PluginRun.from(m), let name = str(n), !name.isEmpty else { return QOPT_ERR_INVALID_ARGUMENT }
    return r.writeWeight(name, data, count, rank, dims, dtype)
  }
  api.weight_set_quantized_int = { m, n, q in
    guard let r = PluginRun.from(m), let name = str(n), let q else { return QOPT_ERR_INVALID_ARGUMENT }
    return r.setQuantized(name, q)
  }
  api.calibration_stats = { m, o, s, out in
    guard let r = PluginRun.from(m), let op = r.op(o), let stat = str(s), let out else { return QOPT_ERR_INVALID_ARGUMENT }
    return r.calibrationStats(op, stat, into: out)
  }
  api.view_release = { m, data in
    guard let r = PluginRun.from(m), let data else { return QOPT_ERR_INVALID_ARGUMENT }
    return r.release(UnsafeRawPointer(data)) ? QOPT_OK : QOPT_ERR_NOT_FOUND
  }
  api.weight_count = { m in PluginRun.from(m).map { Int64($0.module.weights.count) } ?? -1 }
  api.weight_name = { m, i in
    guard let r = PluginRun.from(m), i >= 0, i < r.module.weights.names.count else { return nil }
    return r.cString(r.module.weights.names[Int(i)])
  }
  api.diagnose = { m, sev, o, msg in
    guard let r = PluginRun.from(m) else { return }
    r.diagnose(severity: sev, op: r.op(o), message: str(msg) ?? "")
  }

  // MARK: Rewriting
  api.op_create = { m, f, anchor, wh, n, operands, count, result, hint in
    guard let r = PluginRun.from(m), let fn = r.function(f), let name = str(n), count >= 0,
      count == 0 || operands != nil
    else { return nil }
    var vals: [Value] = []
    for i in 0..<Int(count) {
      // safe: operands is non-nil when count > 0 (checked above).
      guard let v = r.value(operands![i]) else { return nil }
      vals.append(v)
    }
    return r.createOp(in: fn, anchor: anchor, where: wh, name: name, operands: vals, result: result?.pointee, hint: str(hint))
  }
  api.value_replace_uses = { m, o, n in
    guard let r = PluginRun.from(m), let old = r.value(o), let new = r.value(n), old.type == new.type else {
      return QOPT_ERR_INVALID_ARGUMENT
    }
    return r.replaceUses(of: old, with: new)
  }
  api.op_set_operand = { m, o, i, v in
    guard let r = PluginRun.from(m), let op = r.op(o), let f = op.parent, let val = r.value(v), i >= 0,
      i < op.operands.count, op.operands[Int(i)].type == val.type
    else { return QOPT_ERR_INVALID_ARGUMENT }
    // The value must be visible at the op: an argument of its function, or defined before it.
    let visible = val.definingOp.map { d in d.parent === f && (f.index(of: d) ?? .max) < (f.index(of: op) ?? 0) }
      ?? f.arguments.contains { $0 === val }
    guard visible else { return QOPT_ERR_INVALID_ARGUMENT }
    op.operands[Int(i)] = val
    r.context.markChanged()
    return QOPT_OK
  }
  api.op_erase = { m, o in
    guard let r = PluginRun.from(m), let op = r.op(o), let f = op.parent else { return QOPT_ERR_INVALID_ARGUMENT }
    if let res = op.result, !f.users(of: res).isEmpty { return QOPT_ERR_FAILED }
    r.context.erase(op)
    r.forget(op)
    return QOPT_OK
  }

  // MARK: Options
  api.option_int = { o, k in
    guard let r = PluginRun.from(o), let key = str(k) else { return 0 }
    switch r.options.values[key] {
    case .int(let v)?: return Int64(v)
    case .number(let v)?: return Int64(exactly: v.rounded(.towardZero)) ?? 0
    default: return 0
    }
  }
  api.option_float = { o, k in
    guard let r = PluginRun.from(o), let key = str(k) else { return 0 }
    switch r.options.values[key] {
    case .number(let v)?: return v
    case .int(let v)?: return Double(v)
    default: return 0
    }
  }
  api.option_bool = { o, k in
    guard let r = PluginRun.from(o), let key = str(k), case .bool(let v)? = r.options.values[key] else { return 0 }
    return v ? 1 : 0
  }
  api.option_string = { o, k in
    guard let r = PluginRun.from(o), let key = str(k), case .string(let v)? = r.options.values[key] else { return nil }
    return r.cString(v)
  }
  return api
}

/// The ABI's dtype code of `d`.
func cDType(_ d: DType) -> Int32 {
  switch d {
  case .f32: QOPT_DTYPE_F32
  case .f16: QOPT_DTYPE_F16
  case .bf16: QOPT_DTYPE_BF16
  case .f8e4m3: QOPT_DTYPE_F8E4M3
  case .i64: QOPT_DTYPE_I64
  case .i32: QOPT_DTYPE_I32
  case .i8: QOPT_DTYPE_I8
  case .u8: QOPT_DTYPE_U8
  }
}

/// The dtype an ABI code names, if any.
func dtype(fromC code: Int32) -> DType? {
  switch code {
  case QOPT_DTYPE_F32: .f32
  case QOPT_DTYPE_F16: .f16
  case QOPT_DTYPE_BF16: .bf16
  case QOPT_DTYPE_F8E4M3: .f8e4m3
  case QOPT_DTYPE_I64: .i64
  case QOPT_DTYPE_I32: .i32
  case QOPT_DTYPE_I8: .i8
  case QOPT_DTYPE_U8: .u8
  default: nil
  }
}
