import QoptIR
import QoptPasses
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The state of one plugin pass run: the module and context it may touch, the handle tables
/// that give the plugin opaque tokens for IR nodes, and the memory the host lends it.
///
/// Handles are `(index + 1) << 2 | kind`, never addresses: a stale or mixed-up handle reads
/// as "invalid" instead of dereferencing freed memory, and no Swift object address crosses
/// the boundary. The module handle (and the options handle) is this object, validated
/// against the set of live runs before every use. Strings and buffers handed out live until
/// the run ends (`deinit`).
final class PluginRun {
  let module: Module
  let context: PassContext
  let options: PluginOptionValues
  let passName: String
  /// Error diagnostics the plugin reported; the first fails the pass.
  var errors: [Diagnostic] = []

  private var functions: [Function] = []
  private var functionIndex: [ObjectIdentifier: Int] = [:]
  private var ops: [Op?] = []
  private var opIndex: [ObjectIdentifier: Int] = [:]
  private var values: [Value] = []
  private var valueIndex: [ObjectIdentifier: Int] = [:]
  private var strings: [String: UnsafeMutablePointer<CChar>] = [:]
  /// Float buffers lent to the plugin (weight and statistics views), until `release` or the
  /// end of the run.
  private var buffers: Set<UnsafeMutableRawPointer> = []

  init(module: Module, context: PassContext, options: PluginOptionValues, passName: String) {
    self.module = module
    self.context = context
    self.options = options
    self.passName = passName
  }

  deinit {
    for p in strings.values { free(p) }
    for b in buffers { b.deallocate() }
  }

  // MARK: - Handles

  private enum Tag: UInt { case function = 1, op = 2, value = 3 }

  private func encode(_ index: Int, _ tag: Tag) -> OpaquePointer {
    // safe: (index + 1) << 2 is never zero.
    OpaquePointer(bitPattern: UInt(index + 1) << 2 | tag.rawValue)!
  }

  private func decode(_ h: OpaquePointer?, _ tag: Tag) -> Int? {
    guard let h else { return nil }
    let bits = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(h)))
    guard bits & 3 == tag.rawValue, bits >> 2 >= 1 else { return nil }
    return Int(bits >> 2) - 1
  }

  func handle(_ f: Function) -> OpaquePointer {
    if let i = functionIndex[ObjectIdentifier(f)] { return encode(i, .function) }
    functions.append(f)
    functionIndex[ObjectIdentifier(f)] = functions.count - 1
    return encode(functions.count - 1, .function)
  }

  func handle(_ op: Op) -> OpaquePointer {
    if let i = opIndex[ObjectIdentifier(op)] { return encode(i, .op) }
    ops.append(op)
    opIndex[ObjectIdentifier(op)] = ops.count - 1
    return encode(ops.count - 1, .op)
  }

  func handle(_ v: Value) -> OpaquePointer {
    if let i = valueIndex[ObjectIdentifier(v)] { return encode(i, .value) }
    values.append(v)
    valueIndex[ObjectIdentifier(v)] = values.count - 1
    return encode(values.count - 1, .value)
  }

  func function(_ h: OpaquePointer?) -> Function? {
    guard let i = decode(h, .function), i < functions.count, functions[i].module === module else { return nil }
    return functions[i]
  }

  func op(_ h: OpaquePointer?) -> Op? {
    guard let i = decode(h, .op), i < ops.count else { return nil }
    return ops[i]
  }

  func value(_ h: OpaquePointer?) -> Value? {
    guard let i = decode(h, .value), i < values.count else { return nil }
    return values[i]
  }

  /// Kills an op's handle (after `op_erase`).
  func forget(_ op: Op) {
    if let i = opIndex[ObjectIdentifier(op)] { ops[i] = nil }
  }

  // MARK: - Lent memory

  /// `s` as a C string owned by this run (one copy per distinct string).
  func cString(_ s: String) -> UnsafePointer<CChar> {
    if let p = strings[s] { return UnsafePointer(p) }
    // safe: strdup fails only when out of memory, which we treat like Swift's allocator does.
    let p = strdup(s)!
    strings[s] = p
    return UnsafePointer(p)
  }

  /// `count` floats owned by this run.
  func floatBuffer(_ count: Int) -> UnsafeMutableBufferPointer<Float> {
    let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
    buffers.insert(raw)
    return UnsafeMutableBufferPointer(start: raw.bindMemory(to: Float.self, capacity: max(count, 1)), count: count)
  }

  /// Frees a buffer `floatBuffer` lent (`view_release`); false when `data` is not one this
  /// run still lends, so a double release or a foreign pointer is refused, not freed.
  func release(_ data: UnsafeRawPointer) -> Bool {
    guard let raw = buffers.remove(UnsafeMutableRawPointer(mutating: data)) else { return false }
    raw.deallocate()
    return true
  }

  // MARK: - Liveness

  /// Runs `body` with this run registered as live, passing its module handle.
  func withHandle<R>(_ body: (OpaquePointer) throws -> R) rethrows -> R {
    let token = Unmanaged.passUnretained(self).toOpaque()
    liveRuns.insert(UInt(bitPattern: token))
    defer { liveRuns.remove(UInt(bitPattern: token)) }
    return try body(OpaquePointer(token))
  }

  /// The run a module or options handle stands for, if that run is still in progress.
  static func from(_ h: OpaquePointer?) -> PluginRun? {
    guard let h else { return nil }
    let raw = UnsafeRawPointer(h)
    guard liveRuns.contains(UInt(bitPattern: raw)) else { return nil }
    return Unmanaged<PluginRun>.fromOpaque(raw).takeUnretainedValue()
  }
}

/// Addresses of the runs (and registrars) in progress; tests run passes concurrently, so
/// this is the one piece of shared state, behind a lock.
final class LiveSet: Sendable {
  private let set = Mutex<Set<UInt>>([])
  func insert(_ a: UInt) { _ = set.withLock { $0.insert(a) } }
  func remove(_ a: UInt) { _ = set.withLock { $0.remove(a) } }
  func contains(_ a: UInt) -> Bool { set.withLock { $0.contains(a) } }
}

let liveRuns = LiveSet()
let liveRegistrars = LiveSet()
