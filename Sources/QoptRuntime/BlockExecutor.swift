import Dispatch
import QoptIR

/// The runtime's forward and reverse execution of one function, for the passes that train or
/// observe a block (`calibrate`, `autoround`); `Interpreter` runs whole models forward. Both
/// decode ops with `ExecutableOp` and share `Kernels`.
///
/// Runs one `@block.N` function (ops in order) forward over `B` samples of `T` tokens at once,
/// keeping every intermediate for a backward pass from `∂L/∂Y` to the gradients of its linear
/// weights. Linears run as one sgemm over all `B·T` rows; RoPE and attention run per sample
/// (positions restart at 0 in each), attention's samples concurrently with single-threaded
/// sgemm (see `perSample`). Gradients are computed only where a tuned weight needs them: no
/// input gradient for q/k/v's shared input (the first norm's output) or anything before it.
///
/// The executor owns an f32 copy of every weight the block reads; a caller replaces the
/// weights being tuned through `weightPointer(_:)` (fake-quantized values) before each pass.
/// Linear weights named in `streaming` (or handed to `stream(_:fill:)`) are not held: each is
/// written into one shared scratch buffer when a linear reads it (`BlockExecutor+Streaming`).
/// Memory: the block's held weights once, one scratch of the largest streamed weight, plus
/// one buffer per SSA value (and one gradient buffer per value on the backward path) of
/// `B·T × width` floats, reused across calls.
package final class BlockExecutor {
  enum Step {
    case param(slot: Int, name: String)
    case rmsNorm(out: Int, x: Int, w: Int, eps: Float, offset: Float)
    case linear(out: Int, x: Int, w: Int, bias: Int?)
    /// `stride`: the head size (the table's head size is the rotary size).
    case rope(out: Int, x: Int, table: RopeTable, stride: Int)
    case attention(
      out: Int, q: Int, k: Int, v: Int, heads: Int, kvHeads: Int, headDim: Int,
      variant: AttentionVariant?)
    case silu(out: Int, x: Int)
    case geluTanh(out: Int, x: Int)
    case scale(out: Int, x: Int, factor: Float)
    case slice(out: Int, x: Int, start: Int)
    case moeRoute(out: Int, x: Int, topK: Int, normalize: Bool)
    case moeDispatch(out: Int, x: Int, route: Int, expert: Int)
    case moeCombine(out: Int, route: Int, outputs: [Int])
    case mul(out: Int, a: Int, b: Int)
    case add(out: Int, a: Int, b: Int)

    /// The op name, for profiles.
    var kind: String {
      switch self {
      case .param: "param"
      case .rmsNorm: "rms_norm"
      case .linear: "linear"
      case .rope: "rope"
      case .attention: "attention"
      case .silu: "silu"
      case .geluTanh: "gelu_tanh"
      case .scale: "scale"
      case .slice: "slice"
      case .moeRoute: "moe_route"
      case .moeDispatch: "moe_dispatch"
      case .moeCombine: "moe_combine"
      case .mul: "mul"
      case .add: "add"
      }
    }
  }

  /// The function compiled, or nil for a `tail` (the ops of `@main` after its last call).
  package let function: Function?
  private(set) var steps: [Step] = []
  private var slotOf: [ObjectIdentifier: Int] = [:]
  private var slotCount = 0
  private var inputSlot = 0
  private var outputSlot = 0
  /// Columns of each slot (weights: element count; activations: width).
  var width: [Int] = []
  private var shapes: [Int: [Int]] = [:]
  var weights: [Int: FloatStorage] = [:]
  var weightSlotByName: [String: Int] = [:]
  /// The weights not held (`BlockExecutor+Streaming`): each slot's filler, and the scratch
  /// buffer the linear reading it gets them in.
  var streamed: [Int: (UnsafeMutablePointer<Float>) -> Void] = [:]
  var weightScratch: FloatStorage?
  /// Receives each streamed trainable weight's gradient as soon as the backward computes it
  /// (see `weightGradientSink`).
  package var weightGradientSink: ((String, UnsafeMutablePointer<Float>) -> Void)?
  private var acts: [FloatStorage?] = []
  private var grads: [FloatStorage?] = []
  private var needsGrad: [Bool] = []
  /// Names of the weights whose gradients `backward` computes.
  package var trainable: Set<String> = []
  /// When true, `backward` also computes ∂L/∂input (`inputGradient`), so a caller can chain
  /// blocks (`finetune`'s whole-model backward); every value then needs a gradient.
  package var computesInputGradient = false
  private var weightGrads: [String: FloatStorage] = [:]
  private(set) var rows = 0
  private(set) var tokens = 0
  /// Rows of each activation slot in the last `forward`: `rows`, except an expert's rows (a
  /// `moe_dispatch` output and everything computed from it) which hold its routed tokens only.
  private var slotRows: [Int] = []
  /// The tokens each `moe_dispatch` output holds, by its slot, in the last `forward`.
  private var dispatched: [Int: [Int]] = [:]
  /// When true, `moe_dispatch` sends every token to every expert (llm-compressor's "calibrate
  /// all experts": statistics from all tokens), while `moe_combine` still adds only the routed
  /// ones, so the block's output is unchanged.
  package var dispatchAllTokens = false
  /// Called with (weight name of a linear, its input rows, width) during `forward` when set
  /// (the input before any activation quantization).
  package var linearInputHook: ((String, UnsafePointer<Float>, Int, Int) -> Void)?
  /// When true, each linear with `input_*` attributes fake-quantizes its input before the
  /// matmul exactly as the runtime does (`Kernels.fakeQuantize`), and the backward pass treats
  /// that quantization as the identity (straight-through): ∂L/∂x = ∂L/∂x̂, while ∂L/∂W uses x̂.
  package var quantizeInputs = false
  /// When true, attention reads keys (after RoPE) and values rounded to f16, as llama.cpp does
  /// with its default f16 KV cache (its CPU flash attention then works in f32). Forward only:
  /// the rounding is done in place on the key and value activations.
  package var keyValueF16 = false
  /// When true, RoPE angles are computed as ggml computes them (`RopeTable.ggml`; plain RoPE
  /// only, not llama-3 scaling), for llama.cpp's numbers.
  package var ggmlRope = false {
    didSet {
      guard ggmlRope else { return }
      for (i, step) in steps.enumerated() {
        guard case .rope(let o, let x, let t, let stride) = step, t.ggmlTheta == nil else {
          continue
        }
        guard let base = ropeTheta[o] else { continue }
        let table = RopeTable.ggml(headDim: t.headDim, theta: base, positions: t.positions)
        steps[i] = .rope(out: o, x: x, table: table, stride: stride)
      }
    }
  }
  /// When true, linears, RMS norms, RoPE, SiLU and plain causal attention compute as
  /// llama.cpp's CPU backend does, bit for bit (`Kernels.ggml*`: tinyBLAS products, ggml's
  /// RMS norm, fused RoPE rotation, `ggml_v_silu`, tiled flash attention); with
  /// `keyValueF16` and `ggmlRope`, the forward of `calibrate<numerics=llama.cpp>`. Forward
  /// only; other ops and attention variants keep qopt's kernels.
  package var ggmlArithmetic = false
  /// Whether llama.cpp holds the Q/K head dimensions in adjacent pairs (its `llama`
  /// architecture permutes them so; NeoX-RoPE architectures keep HF's halves): the order
  /// `ggmlArithmetic`'s attention adds the query·key products in.
  package var ggmlInterleavedQK = true
  /// The base of each plain (unscaled) RoPE step, by output slot.
  private var ropeTheta: [Int: Double] = [:]
  /// Each quantized-input linear's settings and its x̂ buffer, keyed by its output slot.
  private var inputQuantization: [Int: InputQuantization] = [:]
  private var quantizedInputs: [Int: FloatStorage] = [:]
  /// When non-nil, seconds spent per step kind ("fwd linear", "bwd attention", …), for the
  /// benchmark's "where the time goes" table.
  package var profile: [String: Double]?

  /// Runs `body`, adding its wall time to `profile[key]` when profiling.
  @inline(__always)
  package func timed(_ key: @autoclosure () -> String, _ body: () -> Void) {
    guard profile != nil else { return body() }
    let t0 = monotonicSeconds()
    body()
    profile?[key(), default: 0] += monotonicSeconds() - t0
  }

  /// Compiles `function` and loads (dequantizing as needed) the weights it reads from `module`.
  /// Ops are decoded by `ExecutableOp`, as the interpreter decodes them; errors are
  /// `RuntimeError`s located at the op, which the pass that asked names (`PassManager`).
  /// Weights named in `streaming` are not copied: a linear reading one gets it decoded from
  /// the module into the shared scratch each time (`stream(_:fill:)` replaces the source).
  package convenience init(
    function: Function, module: Module, streaming: Set<String> = []
  ) throws(RuntimeError) {
    guard function.arguments.count == 1 else {
      throw RuntimeError("@\(function.name) must take one activation argument")
    }
    try self.init(
      input: function.arguments[0], body: function.body, module: module, of: function,
      streaming: streaming)
  }

  /// Compiles `body`, a straight-line run of ops whose only activation input is `input`
  /// (`finetune` runs `@main`'s ops after the last block call, the final norm and the head,
  /// this way); `body` ends in a `return` or its last op's result is the output.
  package init(
    input: Value, body: [Op], module: Module, of compiled: Function? = nil,
    streaming: Set<String> = []
  ) throws(RuntimeError) {
    self.function = compiled
    let function = (arguments: [input], body: body)
    func slot(_ v: Value) -> Int {
      if let s = slotOf[ObjectIdentifier(v)] { return s }
      let s = slotCount
      slotCount += 1
      slotOf[ObjectIdentifier(v)] = s
      width.append(0)
      return s
    }
    var sawReturn = false
    inputSlot = slot(function.arguments[0])
    width[inputSlot] = function.arguments[0].type.shape.last.flatMap { $0 } ?? 0
    func use(_ op: Op, _ i: Int) throws(RuntimeError) -> Int {
      guard i < op.operands.count, let s = slotOf[ObjectIdentifier(op.operands[i])] else {
        throw RuntimeError("operand #\(i) is missing or undefined", at: op)
      }
      return s
    }
    for op in function.body {
      switch try ExecutableOp(op) {
      case .param(let name):
        guard let r = op.result, let entry = module.weights[name] else {
          throw RuntimeError("weight \(Printer.symbol(name)) is not in the weight store", at: op)
        }
        let s = slot(r)
        shapes[s] = entry.shape
        weightSlotByName[name] = s
        steps.append(.param(slot: s, name: name))
        if streaming.contains(name), case .dense = entry {
          width[s] = entry.shape.reduce(1, *)
          streamed[s] = Self.decoder(entry)
          continue
        }
        let floats: [Float]
        switch entry {
        case .dense(let t):
          floats = t.floats()
          t.releasePages()  // the checkpoint's pages (or a decoded copy): the f32 copy is ours
        case .quantized(let q):
          switch q.scheme {
          case .int, .ggml: break
          default:
            throw RuntimeError("weight \(Printer.symbol(name)) has a non-integer scheme", at: op)
          }
          floats = q.dequantized()
        }
        weights[s] = FloatStorage(floats)
        width[s] = floats.count
      case .rmsNorm(let eps, let offset):
        let x = try use(op, 0), w = try use(op, 1)
        guard width[w] > 0, width[x] % width[w] == 0 else {
          throw RuntimeError("weight length must divide the input's last dimension", at: op)
        }
        let o = slot(op.result!)  // safe: rms_norm has a result (verifier)
        width[o] = width[x]
        steps.append(.rmsNorm(out: o, x: x, w: w, eps: eps, offset: offset))
      case .linear(let q):
        let x = try use(op, 0), w = try use(op, 1)
        let b = op.operands.count > 2 ? try use(op, 2) : nil
        guard let shape = shapes[w], shape.count == 2, shape[1] == width[x] else {
          throw RuntimeError("weight must be a [out, \(width[x])] param", at: op)
        }
        let o = slot(op.result!)  // safe: linear has a result
        width[o] = shape[0]
        inputQuantization[o] = q
        steps.append(.linear(out: o, x: x, w: w, bias: b))
      case .rope(let d, let theta, let llama3, let r):
        let x = try use(op, 0)
        guard width[x] % d == 0 else {
          throw RuntimeError("input must be [tokens, heads*\(d)]", at: op)
        }
        let o = slot(op.result!)  // safe: rope has a result
        width[o] = width[x]
        // Rows are added by `forward` for the window length it runs (`coverPositions`).
        let table = RopeTable(headDim: r, theta: theta, positions: 0, llama3: llama3)
        // ggml's angles (numerics=llama.cpp) are for plain, full-width RoPE only.
        if llama3 == nil && r == d { ropeTheta[o] = theta }
        steps.append(.rope(out: o, x: x, table: table, stride: d))
      case .attention(let h, let kvh, let d, let variant):
        let q = try use(op, 0), k = try use(op, 1), v = try use(op, 2)
        guard h % kvh == 0, width[q] == h * d, width[k] == kvh * d, width[v] == kvh * d else {
          throw RuntimeError(
            "q, k, v widths do not match heads=\(h), kv_heads=\(kvh), head_dim=\(d)", at: op)
        }
        let o = slot(op.result!)  // safe: attention has a result
        width[o] = width[q]
        steps.append(
          .attention(out: o, q: q, k: k, v: v, heads: h, kvHeads: kvh, headDim: d, variant: variant)
        )
      case .silu, .geluTanh, .scale:
        let x = try use(op, 0)
        let o = slot(op.result!)  // safe: unary ops have a result
        width[o] = width[x]
        switch try ExecutableOp(op) {
        case .scale(let f): steps.append(.scale(out: o, x: x, factor: f))
        case .geluTanh: steps.append(.geluTanh(out: o, x: x))
        default: steps.append(.silu(out: o, x: x))
        }
      case .slice(let start, let size):
        let x = try use(op, 0)
        guard start + size <= width[x] else {
          throw RuntimeError(
            "columns \(start)..<\(start + size) exceed the input's \(width[x])", at: op)
        }
        let o = slot(op.result!)  // safe: slice has a result
        width[o] = size
        steps.append(.slice(out: o, x: x, start: start))
      case .moeRoute(let k, let normalize):
        let x = try use(op, 0)
        guard k <= width[x] else {
          throw RuntimeError("top_k \(k) exceeds the \(width[x]) experts", at: op)
        }
        let o = slot(op.result!)  // safe: moe_route has a result
        width[o] = width[x]
        steps.append(.moeRoute(out: o, x: x, topK: k, normalize: normalize))
      case .moeDispatch(let expert):
        let x = try use(op, 0), r = try use(op, 1)
        guard expert < width[r] else {
          throw RuntimeError("expert \(expert) is outside the route's \(width[r]) experts", at: op)
        }
        let o = slot(op.result!)  // safe: moe_dispatch has a result
        width[o] = width[x]
        steps.append(.moeDispatch(out: o, x: x, route: r, expert: expert))
      case .moeCombine:
        let r = try use(op, 0)
        var ys: [Int] = []
        for i in 1..<op.operands.count { ys.append(try use(op, i)) }
        guard ys.count == width[r], let d = ys.first.map({ width[$0] }),
          ys.allSatisfy({ width[$0] == d })
        else {
          throw RuntimeError(
            "moe_combine needs one output of equal width per expert of the route", at: op)
        }
        let o = slot(op.result!)  // safe: moe_combine has a result
        width[o] = d
        steps.append(.moeCombine(out: o, route: r, outputs: ys))
      case .mul, .add:
        let a = try use(op, 0), b = try use(op, 1)
        let o = slot(op.result!)  // safe: binary ops have a result
        width[o] = width[a]
        steps.append(op.kind == .mul ? .mul(out: o, a: a, b: b) : .add(out: o, a: a, b: b))
      case .return:
        outputSlot = try use(op, 0)
        sawReturn = true
      case .embedding, .call, .dequantize, .extern:
        throw RuntimeError("the block executor cannot run '\(op.name)'", at: op)
      }
    }
    if !sawReturn, let r = body.last?.result, let s = slotOf[ObjectIdentifier(r)] {
      outputSlot = s
    }
    // A weight that is not one linear's alone is held after all (`readOnlyByLinears`).
    for (s, fill) in streamed where !readOnlyByLinears(s) {
      let held = FloatStorage(count: width[s])
      fill(held.pointer)
      weights[s] = held
      streamed[s] = nil
    }
    acts = [FloatStorage?](repeating: nil, count: slotCount)
    slotRows = [Int](repeating: 0, count: slotCount)
    grads = acts
    needsGrad = [Bool](repeating: false, count: slotCount)
  }

  private var plannedFor: (Set<String>, Bool)?

  /// Marks the values whose gradient `backward` must compute: those that depend on a trainable
  /// weight. Everything upstream of the first tuned linear (the block input, the first norm,
  /// the q/k/v inputs) needs none, which skips their input-gradient products.
  private func planGradients() {
    if let p = plannedFor, p.0 == trainable, p.1 == computesInputGradient { return }
    plannedFor = (trainable, computesInputGradient)
    var depends = [Bool](repeating: false, count: slotCount)
    depends[inputSlot] = computesInputGradient
    for (name, s) in weightSlotByName where trainable.contains(name) { depends[s] = true }
    for step in steps {
      switch step {
      case .param: break
      case .rmsNorm(let o, let x, let w, _, _): depends[o] = depends[x] || depends[w]
      case .linear(let o, let x, let w, let b):
        depends[o] = depends[x] || depends[w] || b.map { depends[$0] } ?? false
      case .rope(let o, let x, _, _), .silu(let o, let x), .geluTanh(let o, let x),
        .scale(let o, let x, _),
        .slice(let o, let x, _), .moeRoute(let o, let x, _, _):
        depends[o] = depends[x]
      case .moeDispatch(let o, let x, let r, _): depends[o] = depends[x] || depends[r]
      case .moeCombine(let o, let r, let ys): depends[o] = depends[r] || ys.contains { depends[$0] }
      case .attention(let o, let q, let k, let v, _, _, _, _):
        depends[o] = depends[q] || depends[k] || depends[v]
      case .mul(let o, let a, let b), .add(let o, let a, let b):
        depends[o] = depends[a] || depends[b]
      }
    }
    for s in 0..<slotCount { needsGrad[s] = depends[s] && weights[s] == nil && streamed[s] == nil }
  }

  /// Width of the block's input and output rows.
  package var hiddenWidth: Int { width[inputSlot] }
  /// Width of the output rows (the vocabulary for a head).
  package var outputWidth: Int { width[outputSlot] }

  /// ∂L/∂input of the last `backward` (`rows × hiddenWidth`), when `computesInputGradient`.
  package var inputGradient: UnsafePointer<Float>? {
    guard computesInputGradient, let g = grads[inputSlot] else { return nil }
    return UnsafePointer(g.pointer)
  }

  /// Frees every activation and gradient buffer (the weights stay): between uses, a block
  /// that is recomputed on the backward (activation checkpointing) holds only its weights.
  package func releaseActivations() {
    for s in 0..<slotCount where weights[s] == nil {
      acts[s] = nil
      grads[s] = nil
    }
    quantizedInputs = [:]
    scratchBuffers = []
  }

  /// The f32 buffer of weight `name` (to overwrite with fake-quantized values).
  package func weightPointer(_ name: String) -> UnsafeMutablePointer<Float>? {
    weightSlotByName[name].flatMap { weights[$0]?.pointer }
  }

  /// Whether weight slot `s` is the weight operand of exactly one linear and nothing else
  /// reads it, so a gradient handed over at that linear is the whole gradient.
  func readOnlyByLinears(_ s: Int) -> Bool {
    var linears = 0
    for step in steps {
      switch step {
      case .param: continue
      case .linear(_, let x, let w, let b):
        if w == s { linears += 1 }
        if x == s || b == s { return false }
      case .rmsNorm(_, let x, let w, _, _): if x == s || w == s { return false }
      case .rope(_, let x, _, _), .silu(_, let x), .geluTanh(_, let x), .scale(_, let x, _),
        .slice(_, let x, _), .moeRoute(_, let x, _, _):
        if x == s { return false }
      case .attention(_, let q, let k, let v, _, _, _, _):
        if q == s || k == s || v == s { return false }
      case .moeDispatch(_, let x, let r, _): if x == s || r == s { return false }
      case .moeCombine(_, let r, let ys): if r == s || ys.contains(s) { return false }
      case .mul(_, let a, let b), .add(_, let a, let b): if a == s || b == s { return false }
      }
    }
    return linears == 1
  }

  package func weightShape(_ name: String) -> [Int]? {
    weightSlotByName[name].flatMap { shapes[$0] }
  }

  /// Replaces the input quantization of the linears reading weight `name` (a recalibrated
  /// static scale).
  package func setInputQuantization(_ q: InputQuantization, forWeight name: String) {
    guard let ws = weightSlotByName[name] else { return }
    for case .linear(let o, _, let w, _) in steps where w == ws && inputQuantization[o] != nil {
      inputQuantization[o] = q
    }
  }

  /// The input a linear multiplies: `x` itself, or its fake-quantized copy when inputs are
  /// quantized (computed by `forward`).
  private func linearInput(out o: Int, x: Int) -> UnsafeMutablePointer<Float> {
    guard quantizeInputs, inputQuantization[o] != nil, let q = quantizedInputs[o] else {
      return act(x)
    }
    return q.pointer
  }

  /// The linear weights of the block in op order.
  package var linearWeightNames: [String] {
    var out: [String] = []
    for case .linear(_, _, let w, _) in steps {
      if let name = weightSlotByName.first(where: { $0.value == w })?.key { out.append(name) }
    }
    return out
  }

  /// Floats in activation slot `s` in the current run.
  private func count(_ s: Int) -> Int { slotRows[s] * width[s] }

  private func act(_ s: Int) -> UnsafeMutablePointer<Float> {
    if s == inputSlot || weights[s] != nil { return weights[s]?.pointer ?? acts[s]!.pointer }  // safe: input set by forward
    let n = count(s)
    if let a = acts[s] { a.reserve(n); return a.pointer }
    let a = FloatStorage(count: n)
    acts[s] = a
    return a.pointer
  }

  /// Runs the block on `x` (`samples · tokens` rows of the hidden width); returns a pointer to
  /// the output rows, valid until the next call. Every intermediate stays for `backward`.
  @discardableResult
  package func forward(
    _ x: UnsafePointer<Float>, samples: Int, tokens t: Int
  ) -> UnsafePointer<Float> {
    rows = samples * t
    tokens = t
    for s in 0..<slotCount { slotRows[s] = rows }
    dispatched = [:]
    let input = acts[inputSlot] ?? FloatStorage(count: rows * width[inputSlot])
    input.reserve(rows * width[inputSlot])
    input.pointer.update(from: x, count: rows * width[inputSlot])
    acts[inputSlot] = input
    coverPositions(t)
    for step in steps {
      timed("fwd " + step.kind) { forwardStep(step, samples: samples, tokens: t) }
    }
    return UnsafePointer(act(outputSlot))
  }

  /// Grows every RoPE table to `t` positions when a window is longer than any run before, so
  /// the tables always match the run (a window of any length within the model's context).
  private func coverPositions(_ t: Int) {
    for (i, step) in steps.enumerated() {
      if case .rope(let o, let x, let table, let stride) = step, table.positions < t {
        steps[i] = .rope(out: o, x: x, table: table.covering(t), stride: stride)
      }
    }
  }

  /// The weight an `rms_norm` multiplies by: `w`, or `offset + w` in a scratch copy.
  private func normWeight(_ w: Int, _ offset: Float) -> [Float]? {
    offset == 0 ? nil : (0..<width[w]).map { offset + act(w)[$0] }
  }

  private func forwardStep(_ step: Step, samples: Int, tokens t: Int) {
    switch step {
    case .param: break
    case .rmsNorm(let o, let x, let w, let eps, let offset):
      slotRows[o] = slotRows[x]
      let (r, n) = (slotRows[x] * (width[x] / width[w]), width[w])
      if let scaled = normWeight(w, offset) {
        scaled.withUnsafeBufferPointer {
          if ggmlArithmetic {
            Kernels.ggmlRMSNorm(
              act(x), rows: r, columns: n, weight: $0.baseAddress!, eps: eps, into: act(o))
          } else {
            Kernels.rmsNorm(
              act(x), rows: r, columns: n, weight: $0.baseAddress!, eps: eps, into: act(o))
          }
        }  // safe: n > 0
      } else if ggmlArithmetic {
        Kernels.ggmlRMSNorm(act(x), rows: r, columns: n, weight: act(w), eps: eps, into: act(o))
      } else {
        Kernels.rmsNorm(act(x), rows: r, columns: n, weight: act(w), eps: eps, into: act(o))
      }
    case .linear(let o, let x, let w, let b):
      slotRows[o] = slotRows[x]
      let rx = slotRows[x]
      if let hook = linearInputHook,
        let name = weightSlotByName.first(where: { $0.value == w })?.key
      {
        hook(name, act(x), rx, width[x])
      }
      if quantizeInputs, let q = inputQuantization[o] {
        let n = rx * width[x]
        let buffer = quantizedInputs[o] ?? FloatStorage(count: n)
        buffer.reserve(n)
        quantizedInputs[o] = buffer
        buffer.pointer.update(from: act(x), count: n)
        Kernels.fakeQuantize(buffer.pointer, rows: rx, columns: width[x], q)
      }
      guard rx > 0 else { return }
      let wp = linearWeight(w)
      if ggmlArithmetic, !quantizeInputs,
        Kernels.ggmlLinear(
          act(x), rows: rx, inFeatures: width[x], weight: wp, outFeatures: width[o],
          into: act(o))
      {
        if let b {
          let (y, bias, m) = (act(o), act(b), width[o])
          for r in 0..<rx { for i in 0..<m { y[r * m + i] += bias[i] } }
        }
        return
      }
      Kernels.linear(
        linearInput(out: o, x: x), rows: rx, inFeatures: width[x], weight: wp,
        outFeatures: width[o], bias: b.map { UnsafePointer(act($0)) }, into: act(o))
    case .rope(let o, let x, let table, let d):
      let wd = width[x]
      let (xp, op) = (act(x), act(o))
      for s in 0..<samples where ggmlArithmetic {
        Kernels.ggmlRope(
          xp + s * t * wd, rows: t, heads: wd / d, table: table, into: op + s * t * wd,
          headStride: d)
      }
      for s in 0..<samples where !ggmlArithmetic {
        Kernels.rope(
          xp + s * t * wd, rows: t, heads: wd / d, table: table, into: op + s * t * wd,
          headStride: d)
      }
    case .attention(let o, let q, let k, let v, let h, let kvh, let d, let variant):
      nonisolated(unsafe) let (qp, kp, vp, op) = (act(q), act(k), act(v), act(o))
      let (wq, wk, wv, wo) = (width[q], width[k], width[v], width[o])
      if keyValueF16 {
        for (p, n) in [(kp, rows * wk), (vp, rows * wv)] {
          for i in 0..<n { p[i] = Float(Float16(p[i])) }
        }
      }
      let (ggml, interleaved) = (ggmlArithmetic, ggmlInterleavedQK)
      perSample(samples) { s in
        if ggml && variant == nil {
          Kernels.ggmlAttention(
            q: qp + s * t * wq, k: kp + s * t * wk, v: vp + s * t * wv, tokens: t, heads: h,
            kvHeads: kvh, headDim: d, interleavedQK: interleaved, into: op + s * t * wo)
          return
        }
        if let variant {
          Kernels.attention(
            q: qp + s * t * wq, k: kp + s * t * wk, v: vp + s * t * wv, tokens: t, heads: h,
            kvHeads: kvh,
            headDim: d, variant: variant, into: op + s * t * wo)
          return
        }
        Kernels.attention(
          q: qp + s * t * wq, k: kp + s * t * wk, v: vp + s * t * wv, tokens: t, heads: h,
          kvHeads: kvh,
          headDim: d, into: op + s * t * wo)
      }
    case .silu(let o, let x):
      slotRows[o] = slotRows[x]
      if ggmlArithmetic {
        Kernels.ggmlSilu(act(x), count: count(x), into: act(o))
      } else {
        Kernels.silu(act(x), count: count(x), into: act(o))
      }
    case .geluTanh(let o, let x):
      slotRows[o] = slotRows[x]
      Kernels.geluTanh(act(x), count: count(x), into: act(o))
    case .scale(let o, let x, let f):
      slotRows[o] = slotRows[x]
      Kernels.scale(act(x), count: count(x), by: f, into: act(o))
    case .slice(let o, let x, let start):
      slotRows[o] = slotRows[x]
      Kernels.sliceColumns(
        act(x), rows: slotRows[x], columns: width[x], start: start, size: width[o], into: act(o))
    case .moeRoute(let o, let x, let k, let normalize):
      slotRows[o] = slotRows[x]
      Kernels.moeRoute(
        act(x), rows: slotRows[x], experts: width[x], topK: k, normalize: normalize, into: act(o))
    case .moeDispatch(let o, let x, let r, let expert):
      let list = Kernels.moeTokens(
        route: act(r), rows: slotRows[r], experts: width[r], expert: expert, all: dispatchAllTokens)
      dispatched[o] = list
      slotRows[o] = list.count
      Kernels.gatherRows(act(x), columns: width[x], tokens: list, into: act(o))
    case .moeCombine(let o, let r, let ys):
      slotRows[o] = slotRows[r]
      let out = act(o)
      out.update(repeating: 0, count: count(o))
      for (e, y) in ys.enumerated() {
        let list = Kernels.moeTokens(
          route: act(r), rows: slotRows[r], experts: width[r], expert: e, all: dispatchAllTokens)
        // Each y derives from its expert's dispatch, so the row counts agree.
        guard list.count == slotRows[y] else { continue }
        Kernels.moeCombineAdd(
          route: act(r), experts: width[r], expert: e, tokens: list, y: act(y), columns: width[o],
          into: out)
      }
    case .mul(let o, let a, let b):
      slotRows[o] = slotRows[a]
      Kernels.mul(act(a), act(b), count: count(a), into: act(o))
    case .add(let o, let a, let b):
      slotRows[o] = slotRows[a]
      Kernels.add(act(a), act(b), count: count(a), into: act(o))
    }
  }

  /// Runs `body(s)` for every sample; with more than one OpenBLAS thread the samples run
  /// concurrently, each with single-threaded sgemm (attention's products are too small to split
  /// well inside OpenBLAS). Each sample writes only its own rows, so the result does not depend
  /// on scheduling.
  private func perSample(_ samples: Int, _ body: @Sendable (Int) -> Void) {
    let threads = BLAS.threads
    guard threads > 1, samples > 1 else {
      for s in 0..<samples { body(s) }
      return
    }
    BLAS.setThreads(1)
    DispatchQueue.concurrentPerform(iterations: samples, execute: body)
    BLAS.setThreads(threads)
  }

  private var scratchBuffers: [FloatStorage] = []

  /// A zeroed throw-away gradient buffer for slot `s` (an input whose gradient nobody needs).
  private func scratch(_ s: Int, _ i: Int) -> UnsafeMutablePointer<Float>? {
    while scratchBuffers.count <= i { scratchBuffers.append(FloatStorage(count: 0)) }
    let n = count(s)
    scratchBuffers[i].reserve(n)
    scratchBuffers[i].zero(n)
    return scratchBuffers[i].pointer
  }

  private func grad(_ s: Int) -> UnsafeMutablePointer<Float>? {
    guard s < needsGrad.count, needsGrad[s] else { return nil }
    return grads[s]!.pointer  // safe: allocated for every slot needing a gradient in backward()
  }

  /// Back-propagates `dy` (∂L/∂output, `rows × width`) through the last `forward`, returning
  /// ∂L/∂W for every weight in `trainable` (valid until the next call).
  package func backward(_ dy: UnsafePointer<Float>) -> [String: UnsafePointer<Float>] {
    planGradients()
    timed("bwd zero gradients") {
      for s in 0..<slotCount where needsGrad[s] {
        let n = count(s)
        let g = grads[s] ?? FloatStorage(count: n)
        g.reserve(n)
        g.zero(n)
        grads[s] = g
      }
    }
    grad(outputSlot)?.update(from: dy, count: count(outputSlot))
    var out: [String: UnsafePointer<Float>] = [:]
    for step in steps.reversed() { backwardStep(step, into: &out) }
    return out
  }

  private func backwardStep(_ step: Step, into out: inout [String: UnsafePointer<Float>]) {
    switch step {
    case .param: break
    case .rmsNorm(let o, let x, let w, let eps, let offset):
      guard let dx = grad(x), let go = grad(o) else { return }
      let (r, n) = (slotRows[x] * (width[x] / width[w]), width[w])
      timed("bwd rms_norm") {
        if let scaled = normWeight(w, offset) {
          scaled.withUnsafeBufferPointer {
            Kernels.rmsNormBackward(
              act(x), rows: r, columns: n, weight: $0.baseAddress!, eps: eps, dy: go, dx: dx)
          }  // safe: n > 0
        } else {
          Kernels.rmsNormBackward(
            act(x), rows: r, columns: n, weight: act(w), eps: eps, dy: go, dx: dx)
        }
      }
    case .linear(let o, let x, let w, _):
      guard let go = grad(o) else { return }
      let rx = slotRows[x]
      if let dx = grad(x), rx > 0 {
        let wp = linearWeight(w)
        timed("bwd linear dX") {
          Kernels.linearBackwardInput(
            dy: go, rows: rx, outFeatures: width[o], weight: wp, inFeatures: width[x], dx: dx)
        }
      }
      if let name = weightSlotByName.first(where: { $0.value == w })?.key, trainable.contains(name)
      {
        let n = width[o] * width[x]
        // A streamed weight's gradient goes to the sink in the scratch its values were in
        // (the input gradient above was their last use).
        let sink = streamed[w] != nil ? weightGradientSink : nil
        let g = sink != nil ? scratchForStreamed(n) : weightGrads[name] ?? FloatStorage(count: n)
        if sink == nil { weightGrads[name] = g }
        timed("bwd linear dW") {
          if rx == 0 {
            g.zero(n)  // an expert no token reached: no gradient
          } else {
            Kernels.linearBackwardWeight(
              dy: go, rows: rx, outFeatures: width[o], input: linearInput(out: o, x: x),
              inFeatures: width[x], dw: g.pointer)
          }
        }
        if let sink {
          timed("weight gradient sink") { sink(name, g.pointer) }
        } else {
          out[name] = UnsafePointer(g.pointer)
        }
      }
    case .rope(let o, let x, let table, let d):
      guard let dx = grad(x), let go = grad(o) else { return }
      let wd = width[x]
      timed("bwd rope") {
        for s in 0..<(rows / tokens) {
          Kernels.ropeBackward(
            dy: go + s * tokens * wd, rows: tokens, heads: wd / d, table: table,
            dx: dx + s * tokens * wd, headStride: d)
        }
      }
    case .attention(let o, let q, let k, let v, let h, let kvh, let d, let variant):
      guard let go = grad(o), let dq = grad(q) ?? scratch(q, 0), let dk = grad(k) ?? scratch(k, 1),
        let dv = grad(v) ?? scratch(v, 2)
      else { return }
      let t = tokens
      nonisolated(unsafe) let (qp, kp, vp, gop, dqp, dkp, dvp) = (
        act(q), act(k), act(v), go, dq, dk, dv
      )
      let (wq, wk, wv, wo) = (width[q], width[k], width[v], width[o])
      timed("bwd attention") {
        perSample(rows / t) { s in
          if let variant {
            Kernels.attentionBackward(
              q: qp + s * t * wq, k: kp + s * t * wk, v: vp + s * t * wv, tokens: t, heads: h,
              kvHeads: kvh, headDim: d, variant: variant, dOut: gop + s * t * wo,
              dq: dqp + s * t * wq,
              dk: dkp + s * t * wk, dv: dvp + s * t * wv)
            return
          }
          Kernels.attentionBackward(
            q: qp + s * t * wq, k: kp + s * t * wk, v: vp + s * t * wv, tokens: t, heads: h,
            kvHeads: kvh, headDim: d, dOut: gop + s * t * wo, dq: dqp + s * t * wq,
            dk: dkp + s * t * wk,
            dv: dvp + s * t * wv)
        }
      }
    case .silu(let o, let x):
      guard let dx = grad(x), let go = grad(o) else { return }
      timed("bwd silu") { Kernels.siluBackward(act(x), count: count(x), dy: go, dx: dx) }
    case .geluTanh(let o, let x):
      guard let dx = grad(x), let go = grad(o) else { return }
      timed("bwd gelu_tanh") { Kernels.geluTanhBackward(act(x), count: count(x), dy: go, dx: dx) }
    case .scale(let o, let x, let f):
      guard let dx = grad(x), let go = grad(o) else { return }
      timed("bwd scale") { for i in 0..<count(x) { dx[i] += f * go[i] } }
    case .slice(let o, let x, let start):
      guard let dx = grad(x), let go = grad(o) else { return }
      timed("bwd slice") {
        Kernels.sliceColumnsBackward(
          dy: go, rows: slotRows[x], columns: width[x], start: start, size: width[o], dx: dx)
      }
    case .moeRoute(let o, let x, _, let normalize):
      guard let dx = grad(x), let go = grad(o) else { return }
      timed("bwd moe_route") {
        Kernels.moeRouteBackward(
          act(x), route: act(o), rows: slotRows[x], experts: width[x], normalize: normalize, dy: go,
          dx: dx)
      }
    case .moeDispatch(let o, let x, _, _):
      guard let dx = grad(x), let go = grad(o), let list = dispatched[o] else { return }
      timed("bwd moe_dispatch") {
        Kernels.scatterAddRows(dy: go, columns: width[x], tokens: list, dx: dx)
      }
    case .moeCombine(let o, let r, let ys):
      guard let go = grad(o) else { return }
      let dr = grad(r)
      timed("bwd moe_combine") {
        for (e, y) in ys.enumerated() {
          let list = Kernels.moeTokens(
            route: act(r), rows: slotRows[r], experts: width[r], expert: e, all: dispatchAllTokens)
          guard list.count == slotRows[y] else { continue }
          Kernels.moeCombineBackward(
            route: act(r), experts: width[r], expert: e, tokens: list, y: act(y), columns: width[o],
            dOut: go,
            dy: grad(y), dRoute: dr)
        }
      }
    case .mul(let o, let a, let b):
      guard let go = grad(o) else { return }
      let n = count(a)
      var scratch = [Float](repeating: 0, count: 0)
      let da = grad(a), db = grad(b)
      if da == nil || db == nil { scratch = [Float](repeating: 0, count: n) }
      timed("bwd mul") {
        scratch.withUnsafeMutableBufferPointer { sp in
          Kernels.mulBackward(
            act(a), act(b), count: n, dy: go, da: da ?? sp.baseAddress!, db: db ?? sp.baseAddress!)  // safe: scratch sized n when used
        }
      }
    case .add(let o, let a, let b):
      guard let go = grad(o) else { return }
      let n = count(a)
      timed("bwd add") {
        if let da = grad(a) { for i in 0..<n { da[i] += go[i] } }
        if let db = grad(b) { for i in 0..<n { db[i] += go[i] } }
      }
    }
  }
}
