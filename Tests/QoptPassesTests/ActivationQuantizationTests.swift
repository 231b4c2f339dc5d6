import QoptIR
import QoptPasses
import QoptTestSupport
import Testing

private func run(_ pipeline: String, on m: Module) throws {
  try PassManager(threads: 1) { _ in }.run(PipelineParser.parse(pipeline, registry: .builtin()), on: m)
}

/// calibrate's per-window statistics: min/max over everything, the moving average with
/// momentum (the first window sets it, as optimum-quanto's sentinel scale does), per-token
/// absmax range.
@Test func linearInputStatisticsMovingAverage() {
  var s = CalibrationData.ChannelStats(columns: 2)
  let w1: [Float] = [1, -2, 0.5, 0.25]  // tokens: absmax 2, 0.5
  let w2: [Float] = [4, 0, -1, 3]  // tokens: absmax 4, 3
  w1.withUnsafeBufferPointer { s.observe(window: $0.baseAddress!, rows: 2, cols: 2, momentum: 0.9) }
  #expect(s.movingAbsMax == 2 && s.movingMin == -2 && s.movingMax == 1)
  w2.withUnsafeBufferPointer { s.observe(window: $0.baseAddress!, rows: 2, cols: 2, momentum: 0.9) }
  s.finish()
  #expect(s.min == -2 && s.max == 4 && s.tensorAbsMax == 4)
  let m: Float = 0.9
  let ema: Float = m * 2 + (1 - m) * 4
  let emaMin: Float = m * -2 + (1 - m) * -1
  #expect(s.movingAbsMax == ema)
  #expect(s.movingMin == emaMin)
  #expect(s.tokenAbsMaxMin == 0.5 && s.tokenAbsMaxMax == 4 && s.tokenAbsMaxMean == 2.375)
  let ms: [Float] = [(1 + 0.25 + 16 + 1) / 4, (4 + 0.0625 + 0 + 9) / 4]
  #expect(s.absMax == [4, 3])
  #expect(s.meanSquare == ms)
  #expect(s.windows == 2 && s.tokens == 4)
}

/// Dynamic: attributes only; static: one calibrated scale per linear, amax/448 of the
/// calibrated range; the output head keeps float inputs.
@Test func quantizeActivationsSetsAttributes() throws {
  let m = ExampleModel.make()
  try run("quantize-activations<type=fp8;mode=dynamic;strategy=token>,verify", on: m)
  let linears = m.allOps.filter { $0.kind == .linear }
  #expect(linears.count == 15)
  #expect(linears.filter { $0.inputQuantization == InputQuantization(kind: .fp8, mode: .dynamic, strategy: .token) }.count == 14)
  #expect(linears.last?.inputQuantization == nil)  // lm_head (the tied embedding)

  let st = ExampleModel.make()
  try run("calibrate<samples=4;seqlen=16>,quantize-activations<type=int8;mode=static;strategy=tensor>,rtn<bits=8;group-size=-1>,verify", on: st)
  let scales = st.allOps.filter { $0.kind == .linear }.compactMap { $0.inputQuantization?.scale }
  #expect(scales.count == 14 && scales.allSatisfy { $0 > 0 && $0 < 1 })
  // q, k and v read the same input: one range, one scale.
  #expect(scales[0] == scales[1] && scales[1] == scales[2])

  let ema = ExampleModel.make()
  try run("calibrate<samples=4;seqlen=16;momentum=0.5>,quantize-activations<type=int8;mode=static;strategy=tensor;observer=moving-average>", on: ema)
  let emaScales = ema.allOps.filter { $0.kind == .linear }.compactMap { $0.inputQuantization?.scale }
  #expect(emaScales.count == 14 && zip(emaScales, scales).allSatisfy { $0 <= $1 })  // an average never exceeds the max
}

/// Static scales need calibrate; static per-token scales do not exist in the reference.
@Test func quantizeActivationsStaticErrors() throws {
  #expect { try run("quantize-activations<mode=static;strategy=tensor>", on: ExampleModel.make()) } throws: { e in
    "\(e)".contains("quantize-activations: mode=static needs calibrated activation ranges")
  }
  #expect { try run("calibrate<samples=2;seqlen=8>,quantize-activations<mode=static>", on: ExampleModel.make()) } throws: { e in
    "\(e)".contains("strategy=token needs mode=dynamic")
  }
  #expect { try run("calibrate<samples=2;seqlen=8;no-stats>,quantize-activations<mode=static;strategy=tensor>", on: ExampleModel.make()) } throws: { e in
    "\(e)".contains("no calibrated input range")
  }
}

/// The settings live in the `.ir` text: save and load give the same text and settings.
@Test func inputQuantizationRoundTripsThroughIR() throws {
  let m = ExampleModel.make()
  try run("calibrate<samples=2;seqlen=8>,quantize-activations<type=fp8;mode=static;strategy=tensor>,rtn<scheme=fp8;group-size=-1>", on: m)
  let dir = TinyCheckpoints.scratchDirectory("actq-ir")
  defer { TinyCheckpoints.removeTree(dir) }
  try ModuleIO.save(m, to: dir + "/m.ir")
  let back = try ModuleIO.load(path: dir + "/m.ir")
  try back.verify()
  #expect(back.text == m.text)
  let a = m.allOps.filter { $0.kind == .linear }.map(\.inputQuantization)
  let b = back.allOps.filter { $0.kind == .linear }.map(\.inputQuantization)
  #expect(a == b && a.compactMap { $0?.scale }.count == 14)
}
