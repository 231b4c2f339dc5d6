import QoptIR
import QoptPasses
import Testing

/// `rtn` hands small weights to the threads whole and splits large ones across them
/// (`RTNJob.run`); either way each weight's codes and scales are the bytes one thread makes
/// from that weight alone, and they come back in the jobs' order.
@Test func rtnJobsMatchEachWeightQuantizedAlone() {
  let scheme = IntScheme(bits: 4, symmetric: true, granularity: .group(64), scaleType: .bf16)
  let quantizer = IntQuantizer(scheme: scheme, rule: .fullRange)
  var state: UInt64 = 0x9E37_79B9_7F4A_7C15
  func weight(_ rows: Int, _ cols: Int) -> TensorData {
    var values = [Float](repeating: 0, count: rows * cols)
    for i in values.indices {
      state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      values[i] = Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 997
    }
    return TensorData(floats: values, shape: [rows, cols])
  }
  // The first is over `wholeWeightValues` (split across the threads), the rest under it.
  let shapes = [(2048, 2048), (64, 128), (96, 64), (1, 64), (300, 192)]
  #expect(shapes[0].0 * shapes[0].1 >= RTNJob.wholeWeightValues)
  let jobs = shapes.enumerated().map { i, s in
    RTNJob(name: "w\(i)", scheme: scheme, quantizer: quantizer, weight: weight(s.0, s.1))
  }
  for threads in [2, 3] {
    let together = RTNJob.run(jobs, threads: threads)
    #expect(together.count == jobs.count)
    for (job, q) in zip(jobs, together) {
      let alone = job.quantize(threads: 1)
      #expect(q.shape == alone.shape, "\(job.name), \(threads) threads")
      #expect(q.codes.isIdentical(to: alone.codes), "\(job.name), \(threads) threads")
      #expect(q.scale.isIdentical(to: alone.scale), "\(job.name), \(threads) threads")
    }
  }
}
