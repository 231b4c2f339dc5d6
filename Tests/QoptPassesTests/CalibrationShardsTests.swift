import QoptIR
import QoptPasses
import Testing

/// The pieces of `calibrate<data-shards=N>` that the end-to-end comparison
/// (`IR/passes/calibrate/data-shards.ir`) cannot see one by one: a shard's statistics survive
/// the partial file bit for bit (every field), adding a shard to empty statistics is the
/// shard itself, and two shards added give the statistics of the windows run one after
/// another (maxima exactly, sums and moving averages to rounding).
@Suite struct CalibrationShardsTests {
  private func windows(_ seed: Int, count: Int) -> [[Float]] {
    (0..<count).map { w in (0..<12).map { i in Float(((i * 7 + w * 13 + seed) % 23) - 11) * 0.37 } }
  }

  private func observed(_ ws: [[Float]]) -> CalibrationData.ChannelStats {
    var s = CalibrationData.ChannelStats(columns: 3)
    for w in ws {
      w.withUnsafeBufferPointer {
        s.observe(window: $0.baseAddress!, rows: 4, cols: 3, momentum: 0.9)
      }
    }
    return s
  }

  @Test func partialFileRoundTripsEveryField() throws {
    let s = observed(windows(1, count: 5))
    let back = try #require(CalibrationData.ChannelStats(json: s.json))
    #expect(back.json == s.json)
    #expect(
      back.firstMax == s.firstMax && back.movingAbsMax.bitPattern == s.movingAbsMax.bitPattern)
  }

  @Test func addingToEmptyIsTheShard() {
    let s = observed(windows(2, count: 3))
    var e = CalibrationData.ChannelStats(columns: 3)
    e.add(s, momentum: 0.9)
    #expect(e.json == s.json)
  }

  @Test func twoShardsAddUpToTheRun() {
    let (a, b) = (windows(3, count: 4), windows(4, count: 3))
    let whole = observed(a + b)
    var sum = observed(a)
    sum.add(observed(b), momentum: 0.9)
    #expect(sum.absMax == whole.absMax && sum.min == whole.min && sum.max == whole.max)
    #expect(sum.windows == 7 && sum.tokens == 28)
    #expect(
      sum.tokenAbsMaxMin == whole.tokenAbsMaxMin && sum.tokenAbsMaxMax == whole.tokenAbsMaxMax)
    func close(_ x: Float, _ y: Float) -> Bool { abs(x - y) <= 1e-5 * max(1, abs(y)) }
    #expect(zip(sum.meanSquare, whole.meanSquare).allSatisfy { close($0, $1) })
    #expect(close(sum.movingMin, whole.movingMin) && close(sum.movingMax, whole.movingMax))
    #expect(close(sum.movingAbsMax, whole.movingAbsMax))
    #expect(close(sum.tokenAbsMaxMean, whole.tokenAbsMaxMean))
  }
}
