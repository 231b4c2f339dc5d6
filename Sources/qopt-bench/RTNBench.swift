import Dispatch
import QoptIR
import QoptPasses

#if canImport(Glibc)
  import Glibc
#endif

/// `rtn` int4 g128 over ≥ 100 M random f32 weights, through the pass manager, against a plain
/// copy of the same bytes measured in the same run. Target: ≥ 25 % of copy bandwidth, peak
/// RSS ≤ 1.5 × the f32 input.
func runRTNBench() {
  let rows = 12288
  let cols = 8192  // 100.7 M weights, 403 MB of f32
  let n = rows * cols
  let inputBytes = n * 4
  let weights = TensorData.build(dtype: .f32, shape: [rows, cols]) { raw in
    nonisolated(unsafe) let p = raw.baseAddress!.assumingMemoryBound(to: Float.self)  // safe: n > 0
    DispatchQueue.concurrentPerform(iterations: 64) { chunk in
      var s = UInt64(chunk) &* 0x9E37_79B9_7F4A_7C15 | 1
      for i in (n * chunk / 64)..<(n * (chunk + 1) / 64) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17
        p[i] = Float(Int64(bitPattern: s >> 11) - (1 << 52)) * 0x1p-52 * 0.05
      }
    }
  }
  let baseRSS = currentRSS()
  let threads = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
  var rtnTimes: [Double] = []
  var peakAfterRTN = 0
  for _ in 0..<3 {
    let m = Module()
    let f = Function(name: "f", arguments: [Value(name: "x", type: TensorType([nil, cols], .f32))], resultType: TensorType([nil, rows], .f32))
    m.append(f)
    var b = Builder(atEndOf: f)
    let w = b.param("w", TensorType([rows, cols], .f32))
    b.ret(b.op(.linear, [f.arguments[0], w], TensorType([nil, rows], .f32)))
    m.weights.set("w", .dense(weights))
    let pm = PassManager(threads: threads) { _ in }
    // safe: the pipeline text is a constant known to parse.
    let pipeline = try! PipelineParser.parse("rtn<bits=4;group-size=128>", registry: .builtin())
    let t0 = seconds()
    // safe: the module above is valid and rtn cannot fail on it.
    try! pm.run(pipeline, on: m)
    rtnTimes.append(seconds() - t0)
    peakAfterRTN = max(peakAfterRTN, currentRSS())
  }
  // The copy: the same bytes into a second buffer, best of three.
  var copyTimes: [Double] = []
  nonisolated(unsafe) let dst = UnsafeMutableRawPointer.allocate(byteCount: inputBytes, alignment: 64)
  memset(dst, 1, inputBytes)
  weights.withUnsafeBytes { src in
    for _ in 0..<3 {
      let t0 = seconds()
      nonisolated(unsafe) let s = src.baseAddress!  // safe: non-empty
      DispatchQueue.concurrentPerform(iterations: threads) { t in
        let lo = inputBytes * t / threads
        let hi = inputBytes * (t + 1) / threads
        memcpy(dst + lo, s + lo, hi - lo)
      }
      copyTimes.append(seconds() - t0)
    }
  }
  dst.deallocate()
  let gb = Double(inputBytes) / 1e9
  let rtnBest = rtnTimes.min()!  // safe: three runs
  let copyBest = copyTimes.min()!  // safe: three runs
  let rtnRate = gb / rtnBest
  let copyRate = gb / copyBest
  printTable(
    "rtn int4 g128 (full-range, f16 scales) over \(n / 1_000_000) M f32 weights, \(threads) threads",
    ["measure", "value"],
    [
      ["f32 input", "\(fmt(gb, 3)) GB"],
      ["rtn wall (best of 3)", "\(fmt(rtnBest, 3)) s"],
      ["rtn f32 read rate", "\(fmt(rtnRate)) GB/s"],
      ["plain copy, same bytes (best of 3)", "\(fmt(copyRate)) GB/s"],
      ["rtn / copy", "\(fmt(rtnRate / copyRate * 100, 1)) % (target >= 25 %)"],
      ["RSS before rtn (input resident)", "\(fmt(Double(baseRSS) / 1e6, 0)) MB"],
      ["RSS after rtn (input + codes + scales)", "\(fmt(Double(peakAfterRTN) / 1e6, 0)) MB"],
      ["RSS after rtn / f32 input", "\(fmt(Double(peakAfterRTN) / Double(inputBytes), 2)) x (target <= 1.5)"],
    ])
}
