/// How `calibrate` accumulates the statistics of one linear's input, one calibration window
/// (`tokens × columns` rows) at a time.
extension CalibrationData.ChannelStats {
  /// Adds window `x` (`rows × cols`): per-channel absmax and sum of squares (divided into a mean
  /// by `finish`), the global min/max, the moving-average range with `momentum`, and the
  /// per-token absmax range.
  package mutating func observe(window x: UnsafePointer<Float>, rows: Int, cols: Int, momentum: Float) {
    var wMin = Float.infinity, wMax = -Float.infinity, tokenSum: Float = 0
    for r in 0..<rows {
      let xr = x + r * cols
      var rowAbs: Float = 0
      for j in 0..<cols {
        let v = xr[j]
        absMax[j] = Swift.max(absMax[j], abs(v))
        meanSquare[j] += v * v
        wMin = Swift.min(wMin, v)
        wMax = Swift.max(wMax, v)
        rowAbs = Swift.max(rowAbs, abs(v))
      }
      tokenAbsMaxMin = Swift.min(tokenAbsMaxMin, rowAbs)
      tokenAbsMaxMax = Swift.max(tokenAbsMaxMax, rowAbs)
      tokenSum += rowAbs
    }
    min = Swift.min(min, wMin)
    max = Swift.max(max, wMax)
    let wAbs = Swift.max(abs(wMin), abs(wMax))
    if windows == 0 {
      (movingMin, movingMax, movingAbsMax) = (wMin, wMax, wAbs)
      (firstMin, firstMax, firstAbsMax) = (wMin, wMax, wAbs)
    } else {
      movingMin = momentum * movingMin + (1 - momentum) * wMin
      movingMax = momentum * movingMax + (1 - momentum) * wMax
      movingAbsMax = momentum * movingAbsMax + (1 - momentum) * wAbs
    }
    // Running mean of the per-token absmax.
    tokenAbsMaxMean += (tokenSum - Float(rows) * tokenAbsMaxMean) / Float(tokens + rows)
    windows += 1
    tokens += rows
  }

  /// Turns the sums of squares into means once every window was observed.
  package mutating func finish() {
    let n = Float(Swift.max(tokens, 1))
    meanSquare = meanSquare.map { $0 / n }
  }
}
