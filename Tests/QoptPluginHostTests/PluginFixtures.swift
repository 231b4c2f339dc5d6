import Foundation
import QoptIR
import QoptPasses
import QoptPluginHost
import Testing

/// Where things are: the built sample plugins sit next to the test binary
/// (`.build/<config>/libClipOutliers.so`), the header in the package's CQoptPlugin target.
enum Fixtures {
  /// The directory of the running test binary.
  static let buildDir: String = {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return (exe as NSString).deletingLastPathComponent
  }()

  /// The package root, from this file's path (Tests/QoptPluginHostTests/…).
  static let repoRoot: String = {
    let here = URL(fileURLWithPath: #filePath)
    return here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
  }()

  static let headerDir = repoRoot + "/Sources/CQoptPlugin/include"

  /// The built sample plugin `name` (a dynamic library product of the package).
  static func builtPlugin(_ name: String) throws -> String {
    let path = buildDir + "/lib\(name).so"
    try #require(FileManager.default.fileExists(atPath: path), "sample plugin not built at \(path); run swift build first")
    return path
  }

  /// One directory under $TMPDIR for every plugin this test process compiles, removed when
  /// the process exits (the libraries stay loaded, and shared between tests, until then).
  static let scratchRoot: String? = {
    var template = Array((NSTemporaryDirectory() + "/qopt-plugin-XXXXXX").utf8CString)
    let dir = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }  // safe: non-empty buffer
    guard let dir else { return nil }
    atexit { if let root = Fixtures.scratchRoot { try? FileManager.default.removeItem(atPath: root) } }
    return String(cString: dir)
  }()

  /// A fresh directory outside the package (inside `scratchRoot`).
  static func tempDir() throws -> String {
    let root = try #require(scratchRoot, "cannot create a temporary directory under \(NSTemporaryDirectory())")
    var template = Array((root + "/dir-XXXXXX").utf8CString)
    let dir = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }  // safe: non-empty buffer
    return try #require(dir.map { String(cString: $0) })
  }

  /// Compiles `source` the way a third party does: `cc -shared -fPIC` with only the header
  /// directory on the include path, in a temp directory outside the package.
  static func compilePlugin(_ source: String, name: String = "plugin") throws -> String {
    let dir = try tempDir()
    let src = dir + "/\(name).c"
    let lib = dir + "/lib\(name).so"
    try source.write(toFile: src, atomically: true, encoding: .utf8)
    let (status, output) = try run("/usr/bin/env", ["cc", "-std=c99", "-Wall", "-Werror", "-shared", "-fPIC", "-I", headerDir, "-o", lib, src, "-lm"], in: dir)
    try #require(status == 0, "cc failed:\n\(output)")
    return lib
  }

  static func run(_ tool: String, _ args: [String], in dir: String) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tool)
    p.arguments = args
    p.currentDirectoryURL = URL(fileURLWithPath: dir)
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
  }

  /// A one-block model: `x → q_proj → down_proj`, both `[rows, cols]` weights given.
  static func twoLinearModel(q: [Float], down: [Float], rows: Int, cols: Int, dtype: DType = .f32) -> Module {
    let m = Module(name: "tiny")
    let x = Value(name: "x", type: TensorType([nil, cols], .f32))
    let f = Function(name: "block.0", arguments: [x], resultType: TensorType([nil, rows], .f32))
    m.append(f)
    var b = Builder(atEndOf: f)
    let wq = b.param("model.layers.0.self_attn.q_proj.weight", TensorType([rows, cols], dtype), named: "wq")
    let h = b.op(.linear, [x, wq], TensorType([nil, rows], .f32), named: "h")
    _ = h
    let wd = b.param("model.layers.0.mlp.down_proj.weight", TensorType([rows, cols], dtype), named: "wd")
    let y = b.op(.linear, [x, wd], TensorType([nil, rows], .f32), named: "y")
    let s = b.op(.add, [h, y], TensorType([nil, rows], .f32), named: "s")
    b.ret(s)
    m.weights.set("model.layers.0.self_attn.q_proj.weight", .dense(TensorData(floats: q, shape: [rows, cols], as: dtype)))
    m.weights.set("model.layers.0.mlp.down_proj.weight", .dense(TensorData(floats: down, shape: [rows, cols], as: dtype)))
    return m
  }

  /// Runs `pipeline` through the real parser and pass manager (verifying after each pass);
  /// returns the log (remarks, warnings).
  @discardableResult
  static func runPipeline(_ pipeline: String, on module: Module, registry: PassRegistry) throws -> [String] {
    let log = LogBox()
    var ins = Instrumentation()
    ins.verifyEach = true
    let pm = PassManager(instrumentation: ins, threads: 1) { log.lines.append($0) }
    try pm.run(try PipelineParser.parse(pipeline, registry: registry), on: module)
    return log.lines
  }

  /// A registry with the built-ins and the given plugins loaded.
  static func registry(loading paths: [String]) throws -> PassRegistry {
    let r = PassRegistry.builtin()
    for p in paths { try PluginLoader.load(p, into: r) }
    return r
  }
}

final class LogBox { var lines: [String] = [] }
