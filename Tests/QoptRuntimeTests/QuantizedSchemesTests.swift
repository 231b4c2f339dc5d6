import QoptIR
import QoptPasses
import QoptRuntime
import QoptTestSupport
import Testing

/// The runtime executes NVFP4 and FP8 weights through the reference dequantization, so a
/// quantized model stays close to the float one on the example model.
@Test(arguments: ["rtn<scheme=nvfp4>,fuse-scales", "rtn<scheme=fp8;group-size=-1>", "rtn<bits=8;group-size=32>"])
func quantizedSchemesRunAndStayClose(_ pipeline: String) throws {
  let ids: [Int32] = (0..<48).map { Int32(($0 * 37 + 11) % 256) }
  let float = ExampleModel.make()
  let quant = ExampleModel.make()
  try PassManager(threads: 1) { _ in }.run(PipelineParser.parse(pipeline, registry: .builtin()), on: quant)
  let a = try Interpreter(module: float).run(ids: ids).data
  let b = try Interpreter(module: quant).run(ids: ids).data
  #expect(a.count == b.count)
  var maxDiff: Float = 0
  var maxAbs: Float = 0
  for (x, y) in zip(a, b) {
    maxDiff = max(maxDiff, abs(x - y))
    maxAbs = max(maxAbs, abs(x))
  }
  #expect(maxDiff > 0, "quantization changed nothing")
  #expect(maxDiff < 0.25 * maxAbs, "\(pipeline): max |Δlogit| \(maxDiff) vs max |logit| \(maxAbs)")
}
