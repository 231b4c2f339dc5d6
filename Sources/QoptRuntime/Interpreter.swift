import QoptExternKernels
import QoptIR

/// A value during interpretation: an f32 activation, token ids, or a weight.
public enum RuntimeValue {
  case tensor(Tensor)
  case ids([Int32])
  case weight(WeightView)
}

/// Executes a module's functions on the CPU: `@main` on token ids, `call`s into the block
/// functions, every known op through `Kernels`.
///
/// Weights: dense f32 entries are read in place (mapped sidecar or owned import buffers).
/// Anything else (f16/bf16, quantized) is converted when its `param` executes and dropped after
/// the op that last uses it, so at most one block's converted weights exist at a time (or all
/// of them, with `.keepAll`). Intermediate activations are freed after their last use.
public final class Interpreter {
  public enum WeightPolicy: Sendable {
    /// Convert non-f32 weights each time they are needed; lowest memory.
    case perUse
    /// Convert once and keep: fastest for repeated runs of a quantized model.
    case keepAll
  }

  public let module: Module
  public var policy: WeightPolicy
  /// Concurrent attention tasks (0: the OpenBLAS thread count).
  public var attentionWorkers: Int {
    get { workers == 0 ? BLAS.threads : workers }
    set { workers = newValue }
  }
  private var workers = 0
  /// When non-nil, seconds spent per op name (calls excluded: their bodies are counted).
  public var profile: [String: Double]?
  /// When set, called with every op and its result as it executes (calls included, after
  /// their body): how tests read intermediate values such as a MoE block's route.
  public var observer: ((Op, RuntimeValue) -> Void)?
  private var kept: [String: WeightView] = [:]
  private var ropeTables: [String: RopeTable] = [:]
  private var lastUses: [ObjectIdentifier: [[ObjectIdentifier]]] = [:]
  /// Per function: the indices of `silu` ops fused with the `mul` after them.
  var siluMulFusions: [ObjectIdentifier: Set<Int>] = [:]

  public init(module: Module, policy: WeightPolicy = .perUse) {
    self.module = module
    self.policy = policy
  }

  /// Reads weight `name` as `data` (f32) instead of its store entry from now on, or, with nil,
  /// as the store holds it again: how `assign-schemes<score=kl>` measures one weight quantized
  /// with the rest float, without copying the module.
  public func substitute(_ name: String, _ data: TensorData?) throws(RuntimeError) {
    guard let data else {
      kept[name] = nil
      return
    }
    kept[name] = try WeightView.make(.dense(data), name: name)
  }

  /// Logits `[T, V]` of `@main` for `ids`.
  public func run(ids: [Int32]) throws(RuntimeError) -> Tensor {
    guard let main = module.function(named: "main") else {
      throw RuntimeError("the module has no @main")
    }
    guard case .tensor(let t) = try call(main, [.ids(ids)]) else {
      throw RuntimeError("@main does not return an f32 tensor")
    }
    return t
  }

  /// Runs `@main` up to its final linear (the lm_head) and returns that linear's input and
  /// weight instead of the logits, so a caller can consume `[T, V]` logits in row chunks.
  public func runToHead(
    ids: [Int32]
  ) throws(RuntimeError) -> (hidden: Tensor, head: WeightView, bias: WeightView?) {
    guard let main = module.function(named: "main") else {
      throw RuntimeError("the module has no @main")
    }
    guard let ret = main.returnOp, let last = ret.operands.first?.definingOp, last.kind == .linear
    else {
      throw RuntimeError("@main does not end in a linear (lm_head)")
    }
    var out: (Tensor, WeightView, WeightView?)?
    _ = try call(main, [.ids(ids)]) { op, env throws(RuntimeError) in
      guard op === last else { return false }
      guard case .tensor(let h)? = env[ObjectIdentifier(op.operands[0])],
        let w = try self.weight(env[ObjectIdentifier(op.operands[1])], op)
      else { throw RuntimeError("lm_head operands are not an activation and a weight", at: op) }
      let b =
        op.operands.count > 2 ? try self.weight(env[ObjectIdentifier(op.operands[2])], op) : nil
      guard case .linear(let q) = try ExecutableOp(op) else {
        throw RuntimeError("lm_head is not a linear", at: op)
      }
      out = (self.inputActivation(h, q), w, b)
      return true
    }
    guard let out else { throw RuntimeError("@main stopped before its lm_head") }
    return out
  }

  /// Calls the function named `name` (e.g. `block.3`) on `args`.
  public func call(_ name: String, _ args: [RuntimeValue]) throws(RuntimeError) -> RuntimeValue {
    guard let f = module.function(named: name) else { throw RuntimeError("no function @\(name)") }
    return try call(f, args)
  }

  /// Executes `f`. `stop`, when given, is asked before each op and ends execution early when
  /// it returns true (the result is then meaningless).
  func call(
    _ f: Function, _ args: [RuntimeValue],
    stop: ((Op, [ObjectIdentifier: RuntimeValue]) throws(RuntimeError) -> Bool)? = nil
  ) throws(RuntimeError) -> RuntimeValue {
    guard args.count == f.arguments.count else {
      throw RuntimeError("@\(f.name) takes \(f.arguments.count) arguments, got \(args.count)")
    }
    var env: [ObjectIdentifier: RuntimeValue] = [:]
    for (a, v) in zip(f.arguments, args) { env[ObjectIdentifier(a)] = v }
    let drops = lastUseTable(f)
    let fusions = observer == nil ? siluMulPairs(f) : []
    var fusedMul = -1
    for (i, op) in f.body.enumerated() {
      if i == fusedMul {  // computed with the silu before it
        for id in drops[i] { env[id] = nil }
        continue
      }
      if let stop, try stop(op, env) { return .ids([]) }
      if fusions.contains(i) {
        let mul = f.body[i + 1]
        let t0 = profile == nil ? 0 : monotonicSeconds()
        let result = try siluMul(op, mul, env)
        if profile != nil { profile?["silu·mul", default: 0] += monotonicSeconds() - t0 }
        for id in drops[i] { env[id] = nil }
        if let r = mul.result { env[ObjectIdentifier(r)] = result }
        fusedMul = i + 1
        continue
      }
      if op.kind == .return {
        guard let v = env[ObjectIdentifier(op.operands[0])] else {
          throw RuntimeError("returns an undefined value", at: op)
        }
        return v
      }
      let result: RuntimeValue
      if profile != nil && op.kind != .call {
        let t0 = monotonicSeconds()
        result = try execute(op, env)
        profile?[profileKey(op), default: 0] += monotonicSeconds() - t0
      } else {
        result = try execute(op, env)
      }
      for id in drops[i] { env[id] = nil }
      observer?(op, result)
      if let r = op.result { env[ObjectIdentifier(r)] = result }
    }
    throw RuntimeError("@\(f.name) does not end with return")
  }

  /// Runs `body`, adding its wall time to `profile[key]` when profiling.
  public func timed(_ key: String, _ body: () -> Void) {
    guard profile != nil else { return body() }
    let t0 = monotonicSeconds()
    body()
    profile?[key, default: 0] += monotonicSeconds() - t0
  }

  /// The profile entry of an op: its name, and for a linear also its weight's projection
  /// ("linear q_proj" for `model.layers.3.self_attn.q_proj.weight`), so each GEMM shape shows.
  private func profileKey(_ op: Op) -> String {
    guard op.kind == .linear, op.operands.count > 1, let p = op.operands[1].definingOp,
      case .param(let name)? = try? ExecutableOp(p)
    else { return op.name }
    let parts = name.split(separator: ".")
    let proj =
      parts.count >= 2 && parts.last == "weight" ? parts[parts.count - 2] : parts.last ?? ""
    return "linear \(proj)"
  }

  /// For each op index, the values whose last use is that op (freed right after it).
  private func lastUseTable(_ f: Function) -> [[ObjectIdentifier]] {
    if let t = lastUses[ObjectIdentifier(f)], t.count == f.body.count { return t }
    var last: [ObjectIdentifier: Int] = [:]
    for (i, op) in f.body.enumerated() { for v in op.operands { last[ObjectIdentifier(v)] = i } }
    var t = [[ObjectIdentifier]](repeating: [], count: f.body.count)
    for (id, i) in last { t[i].append(id) }
    lastUses[ObjectIdentifier(f)] = t
    return t
  }

  // MARK: - Ops

  func tensor(_ v: RuntimeValue?, _ op: Op, _ what: String) throws(RuntimeError) -> Tensor {
    guard case .tensor(let t)? = v else {
      throw RuntimeError("\(what) must be an f32 activation", at: op)
    }
    return t
  }

  /// A weight operand, or an activation used as one (a pass may compute weights).
  private func weight(_ v: RuntimeValue?, _ op: Op) throws(RuntimeError) -> WeightView? {
    switch v {
    case .weight(let w)?: return w
    case .tensor(let t)?:
      let buf = FloatBuffer(count: t.count)
      t.data.withUnsafeBufferPointer { buf.pointer.update(from: $0.baseAddress!, count: t.count) }  // safe: weights are non-empty
      return WeightView(shape: t.shape, pointer: UnsafePointer(buf.pointer), owner: buf)
    default: return nil
    }
  }

  /// A linear's input after its `input_*` activation quantization (a fake-quantized copy), or
  /// `x` itself when it has none.
  private func inputActivation(_ x: Tensor, _ q: InputQuantization?) -> Tensor {
    guard let q, x.count > 0 else { return x }
    var y = x
    y.data.withUnsafeMutableBufferPointer {
      Kernels.fakeQuantize($0.baseAddress!, rows: x.rows, columns: x.columns, q)
    }  // safe: non-empty
    return y
  }

  private func resolve(_ name: String, _ op: Op) throws(RuntimeError) -> WeightView {
    if let w = kept[name] { return w }
    guard let e = module.weights[name] else {
      throw RuntimeError("weight @\(name) is not in the weight store", at: op)
    }
    let w = try WeightView.make(e, name: name)
    if policy == .keepAll { kept[name] = w }
    return w
  }

  /// A RoPE table of at least `positions` rows, shared by every rope op with the same
  /// frequencies.
  private func ropeTable(
    headDim: Int, theta: Double, llama3: RopeTable.Llama3?, positions: Int
  ) -> RopeTable {
    let key = "\(headDim)/\(theta)/\(String(describing: llama3))"
    if let t = ropeTables[key], t.positions >= positions { return t }
    let t = RopeTable(
      headDim: headDim, theta: theta, positions: max(positions, 512), llama3: llama3)
    ropeTables[key] = t
    return t
  }

  private func execute(
    _ op: Op, _ env: [ObjectIdentifier: RuntimeValue]
  ) throws(RuntimeError) -> RuntimeValue {
    func operand(_ i: Int) throws(RuntimeError) -> RuntimeValue {
      guard i < op.operands.count, let v = env[ObjectIdentifier(op.operands[i])] else {
        throw RuntimeError("operand #\(i) is missing or undefined", at: op)
      }
      return v
    }
    let decoded = try ExecutableOp(op)
    switch decoded {
    case .param(let name):
      return .weight(try resolve(name, op))

    case .embedding:
      guard case .ids(let ids) = try operand(0) else {
        throw RuntimeError("ids must be i32 token ids", at: op)
      }
      guard let table = try weight(try operand(1), op), table.shape.count == 2 else {
        throw RuntimeError("table must be a 2-D weight", at: op)
      }
      let (v, d) = (table.shape[0], table.shape[1])
      if let bad = ids.firstIndex(where: { $0 < 0 || Int($0) >= v }) {
        throw RuntimeError(
          "token id \(ids[bad]) at position \(bad) is outside the vocabulary (0..<\(v))", at: op)
      }
      return .tensor(
        Tensor(shape: [ids.count, d]) { y in
          ids.withUnsafeBufferPointer {
            Kernels.embedding(
              $0.baseAddress!, count: ids.count, table: table.pointer, columns: d, into: y)
          }  // safe: count checked by Tensor fill only when non-empty
        })

    case .rmsNorm(let eps, let offset):
      let x = try tensor(try operand(0), op, "input")
      guard let w = try weight(try operand(1), op), w.count > 0, x.columns % w.count == 0 else {
        throw RuntimeError("weight length must divide the input's last dimension", at: op)
      }
      // Each run of len(w) elements is normalised (one head for a q/k norm).
      let (rows, n) = (x.rows * (x.columns / w.count), w.count)
      let scaled = offset == 0 ? nil : (0..<n).map { offset + w.pointer[$0] }
      if scaled == nil {
        return .tensor(
          Tensor(shape: x.shape) { y in
            x.data.withUnsafeBufferPointer { xp in
              // safe: non-empty when filled
              nonisolated(unsafe) let (xp, wp, y) = (xp.baseAddress!, w.pointer, y)
              parallelParts(rows, align: 1, work: rows * n) { lo, hi in
                Kernels.rmsNorm(
                  xp + lo * n, rows: hi - lo, columns: n, weight: wp, eps: eps, into: y + lo * n)
              }
            }
          })
      }
      return .tensor(
        Tensor(shape: x.shape) { y in
          x.data.withUnsafeBufferPointer { xp in
            if let scaled {
              scaled.withUnsafeBufferPointer {
                Kernels.rmsNorm(
                  xp.baseAddress!, rows: rows, columns: n, weight: $0.baseAddress!, eps: eps,
                  into: y)
              }  // safe: non-empty when filled
            } else {
              // safe: as above
              Kernels.rmsNorm(
                xp.baseAddress!, rows: rows, columns: n, weight: w.pointer, eps: eps, into: y)
            }
          }
        })

    case .linear(let q):
      let x = inputActivation(try tensor(try operand(0), op, "input"), q)
      guard let w = try weight(try operand(1), op), w.shape.count == 2, w.shape[1] == x.columns
      else {
        throw RuntimeError("weight must be [out, \(x.columns)]", at: op)
      }
      let b = op.operands.count > 2 ? try weight(try operand(2), op) : nil
      if let b, b.count != w.shape[0] {
        throw RuntimeError("bias must have \(w.shape[0]) elements", at: op)
      }
      var shape = x.shape
      shape[shape.count - 1] = w.shape[0]
      return .tensor(
        Tensor(shape: shape) { y in
          x.data.withUnsafeBufferPointer {
            Kernels.linear(
              $0.baseAddress!, rows: x.rows, inFeatures: x.columns, weight: w.pointer,
              outFeatures: w.shape[0], bias: b?.pointer, into: y)  // safe: non-empty when filled
          }
        })

    case .rope(let d, let theta, let llama3, let r):
      let x = try tensor(try operand(0), op, "input")
      guard x.shape.count == 2, d % 2 == 0, x.columns % d == 0 else {
        throw RuntimeError("input must be [tokens, heads*\(d)]", at: op)
      }
      let table = ropeTable(headDim: r, theta: theta, llama3: llama3, positions: x.rows)
      return .tensor(
        Tensor(shape: x.shape) { y in
          x.data.withUnsafeBufferPointer {
            Kernels.rope(
              $0.baseAddress!, rows: x.rows, heads: x.columns / d, table: table, into: y,
              headStride: d)
          }  // safe: non-empty when filled
        })

    case .attention(let h, let kvh, let d, let variant):
      let q = try tensor(try operand(0), op, "q"), k = try tensor(try operand(1), op, "k"),
        v = try tensor(try operand(2), op, "v")
      guard h % kvh == 0, q.columns == h * d, k.columns == kvh * d, v.columns == kvh * d,
        q.rows == k.rows, k.rows == v.rows
      else {
        throw RuntimeError(
          "q, k, v shapes do not match heads=\(h), kv_heads=\(kvh), head_dim=\(d)", at: op)
      }
      if q.rows == 0 { return .tensor(q) }
      return .tensor(
        Tensor(shape: q.shape) { y in
          q.data.withUnsafeBufferPointer { qp in
            k.data.withUnsafeBufferPointer { kp in
              v.data.withUnsafeBufferPointer { vp in
                if let variant {
                  // safe: rows > 0
                  Kernels.attention(
                    q: qp.baseAddress!, k: kp.baseAddress!, v: vp.baseAddress!, tokens: q.rows,
                    heads: h, kvHeads: kvh, headDim: d, variant: variant, into: y)
                  return
                }
                Kernels.attention(
                  q: qp.baseAddress!, k: kp.baseAddress!, v: vp.baseAddress!, tokens: q.rows,
                  heads: h, kvHeads: kvh, headDim: d, into: y, workers: attentionWorkers)  // safe: rows > 0
              }
            }
          }
        })

    case .silu:
      let x = try tensor(try operand(0), op, "input")
      return .tensor(
        Tensor(shape: x.shape) { y in
          x.data.withUnsafeBufferPointer {
            nonisolated(unsafe) let (xp, y) = ($0.baseAddress!, y)  // safe: non-empty when filled
            // Parts start at multiples of 8: the vector body covers the same elements as one call.
            parallelParts(x.count, align: 8) { lo, hi in
              Kernels.silu(xp + lo, count: hi - lo, into: y + lo)
            }
          }
        })

    case .geluTanh:
      let x = try tensor(try operand(0), op, "input")
      return .tensor(
        Tensor(shape: x.shape) { y in
          x.data.withUnsafeBufferPointer {
            Kernels.geluTanh($0.baseAddress!, count: x.count, into: y)
          }  // safe: non-empty when filled
        })

    case .scale(let f):
      let x = try tensor(try operand(0), op, "input")
      return .tensor(
        Tensor(shape: x.shape) { y in
          x.data.withUnsafeBufferPointer {
            Kernels.scale($0.baseAddress!, count: x.count, by: f, into: y)
          }  // safe: non-empty when filled
        })

    case .slice(let start, let size):
      let x = try tensor(try operand(0), op, "input")
      guard x.shape.count == 2, start + size <= x.columns else {
        throw RuntimeError(
          "columns \(start)..<\(start + size) exceed the input's \(x.columns)", at: op)
      }
      return .tensor(
        Tensor(shape: [x.rows, size]) { y in
          x.data.withUnsafeBufferPointer {
            Kernels.sliceColumns(
              $0.baseAddress!, rows: x.rows, columns: x.columns, start: start, size: size, into: y)
          }  // safe: non-empty when filled
        })

    case .moeRoute(let k, let normalize):
      let l = try tensor(try operand(0), op, "logits")
      guard l.shape.count == 2, k <= l.columns else {
        throw RuntimeError("top_k \(k) exceeds the \(l.columns) experts", at: op)
      }
      return .tensor(
        Tensor(shape: l.shape) { y in
          l.data.withUnsafeBufferPointer {
            Kernels.moeRoute(
              $0.baseAddress!, rows: l.rows, experts: l.columns, topK: k, normalize: normalize,
              into: y)
          }  // safe: non-empty when filled
        })

    case .moeDispatch(let expert):
      let x = try tensor(try operand(0), op, "input"), r = try tensor(try operand(1), op, "route")
      guard r.rows == x.rows, expert < r.columns else {
        throw RuntimeError("route does not match the input or the expert", at: op)
      }
      let tokens = r.data.withUnsafeBufferPointer {
        Kernels.moeTokens(route: $0.baseAddress!, rows: r.rows, experts: r.columns, expert: expert)
      }  // safe: route non-empty (T·E > 0) or no tokens read
      return .tensor(
        Tensor(shape: [tokens.count, x.columns]) { y in
          x.data.withUnsafeBufferPointer {
            Kernels.gatherRows($0.baseAddress!, columns: x.columns, tokens: tokens, into: y)
          }  // safe: non-empty when filled
        })

    case .moeCombine:
      let r = try tensor(try operand(0), op, "route")
      guard op.operands.count == r.columns + 1 else {
        throw RuntimeError(
          "the route has \(r.columns) experts but \(op.operands.count - 1) outputs are combined",
          at: op)
      }
      var ys: [Tensor] = []
      for e in 0..<r.columns { ys.append(try tensor(try operand(e + 1), op, "expert output")) }
      let d =
        op.result?.type.shape.last.flatMap { $0 } ?? ys.first(where: { $0.count > 0 })?.columns ?? 0
      var out = Tensor(shape: [r.rows, d], data: [Float](repeating: 0, count: r.rows * d))
      if r.count == 0 { return .tensor(out) }
      try r.data.withUnsafeBufferPointer { (rp) throws(RuntimeError) in
        for (e, y) in ys.enumerated() where y.count > 0 {
          let tokens = Kernels.moeTokens(
            route: rp.baseAddress!, rows: r.rows, experts: r.columns, expert: e)  // safe: non-empty
          guard y.rows == tokens.count, y.columns == d else {
            throw RuntimeError(
              "expert \(e)'s output has \(y.rows) rows, its route \(tokens.count)", at: op)
          }
          y.data.withUnsafeBufferPointer { yp in
            out.data.withUnsafeMutableBufferPointer {
              Kernels.moeCombineAdd(
                route: rp.baseAddress!, experts: r.columns, expert: e, tokens: tokens,
                y: yp.baseAddress!, columns: d, into: $0.baseAddress!)  // safe: non-empty
            }
          }
        }
      }
      return .tensor(out)

    case .mul, .add:
      let a = try tensor(try operand(0), op, "lhs"), b = try tensor(try operand(1), op, "rhs")
      guard a.shape == b.shape else {
        throw RuntimeError("operand shapes \(a.shape) and \(b.shape) differ", at: op)
      }
      let isMul = if case .mul = decoded { true } else { false }
      return .tensor(
        Tensor(shape: a.shape) { y in
          a.data.withUnsafeBufferPointer { ap in
            b.data.withUnsafeBufferPointer { bp in
              // safe: non-empty when filled
              nonisolated(unsafe) let (ap, bp, y) = (ap.baseAddress!, bp.baseAddress!, y)
              parallelParts(a.count, align: 8) { lo, hi in
                if isMul {
                  Kernels.mul(ap + lo, bp + lo, count: hi - lo, into: y + lo)
                } else {
                  Kernels.add(ap + lo, bp + lo, count: hi - lo, into: y + lo)
                }
              }
            }
          }
        })

    case .call(let callee):
      guard let f = module.function(named: callee) else {
        throw RuntimeError("calls an unknown function", at: op)
      }
      var args: [RuntimeValue] = []
      for i in op.operands.indices { args.append(try operand(i)) }
      BLAS.adapt()  // the free cores, re-measured between blocks (a window can take seconds)
      return try call(f, args)

    case .dequantize:
      guard let w = try weight(try operand(0), op) else {
        throw RuntimeError("input must be a weight", at: op)
      }
      return .weight(w)

    case .return:
      throw RuntimeError("the runtime does not execute '\(op.name)'", at: op)

    case .extern:
      // An op a plugin introduced, executed by the plugin's C kernel through libffi.
      var inputs: [ExternTensor] = []
      for i in op.operands.indices {
        guard case .tensor(let t) = try operand(i) else {
          throw RuntimeError(
            "operand #\(i) of an external kernel must be an f32 activation", at: op)
        }
        inputs.append(ExternTensor(shape: t.shape, data: t.data))
      }
      do {
        let out = try ExternCall(op: op)(inputs)
        return .tensor(Tensor(shape: out.shape, data: out.data))
      } catch {
        var e = RuntimeError(error.message)
        e.location = error.location
        throw e
      }
    }
  }
}
