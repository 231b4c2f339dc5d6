import CQoptPlugin

// BitWidthRule — a sample qopt pass plugin in Swift, exported through `@_cdecl`.
//
//   bit-width-rule<default=4;rule=re:.*down_proj:8>: picks a bit width for every linear
//   weight — the first rule whose pattern matches the weight, else `default` — and records it
//   on the weight's `param` op as `{qopt.bits = N}`. `rtn` quantizes each weight at its
//   `qopt.bits`:
//
//     qopt -load-pass-plugin=libBitWidthRule.so \
//          -passes='bit-width-rule<default=4;rule=re:.*down_proj:8>,rtn' in.ir
//
// Only C types from qopt_plugin.h cross the boundary; no Swift value reaches the host.

/// One `pattern:bits` entry of the `rule` option.
private struct Rule {
  var pattern: String
  var bits: Int

  /// `re:<regex>` matches from the start of the weight name or its module name (the name
  /// without `.weight`), as compressed-tensors targets do; anything else matches exactly.
  func matches(_ name: String) throws -> Bool {
    let module = name.hasSuffix(".weight") ? String(name.dropLast(7)) : name
    guard pattern.hasPrefix("re:") else { return pattern == name || pattern == module }
    let re = try Regex(String(pattern.dropFirst(3)))
    return name.prefixMatch(of: re) != nil || module.prefixMatch(of: re) != nil
  }
}

/// Parses `pattern:bits,pattern:bits`; the message says what is wrong.
private func parseRules(_ text: String) -> Result<[Rule], RuleError> {
  var out: [Rule] = []
  for item in text.split(separator: ",") where !item.isEmpty {
    guard let colon = item.lastIndex(of: ":"), let bits = Int(item[item.index(after: colon)...]),
      (2...8).contains(bits), colon != item.startIndex
    else {
      return .failure(RuleError(message: "rule '\(item)' must be 'pattern:bits' with bits in 2...8"))
    }
    out.append(Rule(pattern: String(item[..<colon]), bits: bits))
  }
  return .success(out)
}

private struct RuleError: Error { var message: String }

private func run(
  _ userData: UnsafeMutableRawPointer?, _ hostPtr: UnsafePointer<qopt_host_api>?, _ m: OpaquePointer?,
  _ options: OpaquePointer?
) -> Int32 {
  guard let host = hostPtr?.pointee else { return QOPT_ERR_INVALID_ARGUMENT }
  func diagnose(_ severity: Int32, _ op: OpaquePointer?, _ message: String) {
    message.withCString { host.diagnose(m, severity, op, $0) }
  }
  let defaultBits = Int(host.option_int(options, "default"))
  let ruleText = host.option_string(options, "rule").map { String(cString: $0) } ?? ""
  let rules: [Rule]
  switch parseRules(ruleText) {
  case .success(let r): rules = r
  case .failure(let e):
    diagnose(QOPT_SEVERITY_ERROR, nil, e.message)
    return QOPT_ERR_INVALID_ARGUMENT
  }
  var used = Set<Int>()
  var counts: [Int: Int] = [:]
  for fi in 0..<host.function_count(m) {
    let f = host.function_at(m, fi)
    for oi in 0..<host.function_op_count(m, f) {
      let op = host.function_op_at(m, f, oi)
      guard let n = host.op_name(m, op), String(cString: n) == "linear" else { continue }
      let param = host.value_defining_op(m, host.op_operand(m, op, 1))
      guard let p = host.op_param_name(m, param) else { continue }
      let name = String(cString: p)
      var bits = defaultBits
      do {
        if let i = try rules.firstIndex(where: { try $0.matches(name) }) {
          bits = rules[i].bits
          used.insert(i)
        }
      } catch {
        diagnose(QOPT_SEVERITY_ERROR, nil, "invalid regex in rule: \(error)")
        return QOPT_ERR_INVALID_ARGUMENT
      }
      let rc = "qopt.bits".withCString { host.attr_set_int(m, param, $0, Int64(bits)) }
      guard rc == QOPT_OK else {
        diagnose(QOPT_SEVERITY_ERROR, param, "cannot set qopt.bits (status \(rc))")
        return rc
      }
      counts[bits, default: 0] += 1
    }
  }
  for (i, r) in rules.enumerated() where !used.contains(i) {
    diagnose(QOPT_SEVERITY_WARNING, nil, "rule '\(r.pattern):\(r.bits)' matches no linear weight")
  }
  let summary = counts.keys.sorted().map { "\($0) bits: \(counts[$0] ?? 0)" }.joined(separator: ", ")
  diagnose(QOPT_SEVERITY_REMARK, nil, "chose bit widths for linear weights (\(summary))")
  return QOPT_OK
}

/// A C string with static storage (string literals live in the binary's read-only data).
private func cs(_ s: StaticString) -> UnsafePointer<CChar> {
  UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// The option schema, built once and never freed (the host copies it at registration).
nonisolated(unsafe) private let optionDecls: UnsafeMutablePointer<qopt_option_decl> = {
  let p = UnsafeMutablePointer<qopt_option_decl>.allocate(capacity: 2)
  var bits = qopt_option_decl()
  bits.key = cs("default")
  bits.kind = QOPT_OPTION_INT
  bits.help = cs("bits for a weight no rule matches")
  bits.default_int = 4
  bits.has_range = 1
  bits.min = 2
  bits.max = 8
  var rule = qopt_option_decl()
  rule.key = cs("rule")
  rule.kind = QOPT_OPTION_STRING
  rule.help = cs("comma-separated pattern:bits (pattern: a name or re:regex), first match wins")
  rule.default_string = cs("")
  p.initialize(to: bits)
  (p + 1).initialize(to: rule)
  return p
}()

private func registerPasses(_ hostPtr: UnsafePointer<qopt_host_api>?, _ registry: OpaquePointer?) -> Int32 {
  guard let host = hostPtr?.pointee, host.api_version == QOPT_PLUGIN_API_VERSION,
    host.struct_size >= UInt32(MemoryLayout<qopt_host_api>.stride)
  else { return QOPT_ERR_FAILED }
  var pass = qopt_pass_decl()
  pass.struct_size = UInt32(MemoryLayout<qopt_pass_decl>.stride)
  pass.name = cs("bit-width-rule")
  pass.summary = cs("choose per-layer bit widths from name rules, recorded as qopt.bits")
  pass.options = UnsafePointer(optionDecls)
  pass.option_count = 2
  pass.run = { run($0, $1, $2, $3) }
  return host.register_pass(registry, &pass)
}

nonisolated(unsafe) private let info: UnsafeMutablePointer<qopt_plugin_info> = {
  let p = UnsafeMutablePointer<qopt_plugin_info>.allocate(capacity: 1)
  var i = qopt_plugin_info()
  i.api_version = QOPT_PLUGIN_API_VERSION
  i.struct_size = UInt32(MemoryLayout<qopt_plugin_info>.stride)
  i.name = cs("BitWidthRule")
  i.version = cs("1.0")
  i.register_passes = { registerPasses($0, $1) }
  p.initialize(to: i)
  return p
}()

/// The plugin's one exported symbol.
@_cdecl("qoptGetPassPluginInfo")
public func bitWidthRulePluginInfo() -> UnsafePointer<qopt_plugin_info> {
  UnsafePointer(info)
}
