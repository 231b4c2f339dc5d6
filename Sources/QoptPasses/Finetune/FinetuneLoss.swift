import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// The float model's next-token distributions at every calibration position, reduced to the
/// `k` most likely tokens and the rest mass (`loss=kd`'s teacher, computed once).
///
/// Why top-k: the full distributions of the shared model's 49 152-token vocabulary over
/// 40 windows of 512 tokens would take 4 GB of f32; its top 64 plus the rest mass take
/// 10.5 MB (516 bytes a position), and the KL between these (k+1)-bin distributions is still
/// a divergence whose gradient is exact (see `kd`).
package struct TeacherTopK {
  package let k: Int
  /// `[positions, k]` token ids and probabilities, most likely first (id −1 and probability 0
  /// pad a vocabulary smaller than k).
  package var index: [Int32] = []
  package var prob: [Float] = []
  /// `1 − Σ prob` of each position, summed from the tokens outside the top k.
  package var rest: [Float] = []

  package init(k: Int) { self.k = k }

  /// Appends the top-k distribution of every row of `logits` (`rows × vocab`).
  package mutating func append(_ logits: UnsafePointer<Float>, rows: Int, vocab: Int) {
    let k = min(self.k, vocab)
    var picked = [Bool](repeating: false, count: vocab)
    for r in 0..<rows {
      let z = logits + r * vocab
      var m = -Float.infinity
      for j in 0..<vocab { m = max(m, z[j]) }
      var sum = 0.0
      for j in 0..<vocab { sum += Double(expf(z[j] - m)) }
      // The k largest by a min-heap of (logit, index), ties to the lower index.
      var heap: [(Float, Int)] = []
      heap.reserveCapacity(k)
      func less(_ a: (Float, Int), _ b: (Float, Int)) -> Bool {
        a.0 < b.0 || (a.0 == b.0 && a.1 > b.1)
      }
      func siftDown(_ i0: Int) {
        var i = i0
        while true {
          let l = 2 * i + 1, rr = l + 1
          var s = i
          if l < heap.count && less(heap[l], heap[s]) { s = l }
          if rr < heap.count && less(heap[rr], heap[s]) { s = rr }
          if s == i { return }
          heap.swapAt(i, s)
          i = s
        }
      }
      for j in 0..<vocab {
        let e = (z[j], j)
        if heap.count < k {
          heap.append(e)
          var i = heap.count - 1
          while i > 0 && less(heap[i], heap[(i - 1) / 2]) {
            heap.swapAt(i, (i - 1) / 2)
            i = (i - 1) / 2
          }
        } else if less(heap[0], e) {
          heap[0] = e
          siftDown(0)
        }
      }
      heap.sort { less($1, $0) }
      for (_, j) in heap { picked[j] = true }
      var restSum = 0.0
      for j in 0..<vocab where !picked[j] { restSum += Double(expf(z[j] - m)) }
      for (v, j) in heap {
        index.append(Int32(j))
        prob.append(Float(Double(expf(v - m)) / sum))
        picked[j] = false
      }
      for _ in heap.count..<self.k {
        index.append(-1)
        prob.append(0)
      }
      rest.append(Float(restSum / sum))
    }
  }
}

/// `finetune`'s losses on a batch of logits, each with its exact gradient.
package enum FinetuneLoss {
  /// KL(teacher ‖ student) over the (k+1)-bin distributions (the teacher's top-k tokens and
  /// everything else as one bin), averaged over `rows`; `dz` gets ∂loss/∂logits:
  /// `q_j − p_j` for a top-k token, `q_j − r·q_j/q_rest` for the others (q the student's
  /// softmax, p and r the teacher's top-k probabilities and rest mass, q_rest the student's
  /// mass outside the top k).
  package static func kd(
    logits: UnsafePointer<Float>, rows: Int, vocab: Int, teacher: TeacherTopK,
    firstPosition: Int, dz: UnsafeMutablePointer<Float>
  ) -> Double {
    let k = teacher.k
    var inTop = [Bool](repeating: false, count: vocab)
    var total = 0.0
    let scale = 1 / Double(rows)
    for r in 0..<rows {
      let z = logits + r * vocab, d = dz + r * vocab
      let pos = firstPosition + r
      var m = -Float.infinity
      for j in 0..<vocab { m = max(m, z[j]) }
      var sum = 0.0
      for j in 0..<vocab { sum += Double(expf(z[j] - m)) }
      let logSum = log(sum)
      var restQ = 0.0
      for i in 0..<k where teacher.index[pos * k + i] >= 0 {
        inTop[Int(teacher.index[pos * k + i])] = true
      }
      for j in 0..<vocab where !inTop[j] { restQ += Double(expf(z[j] - m)) }
      restQ = max(restQ / sum, 1e-30)
      let rMass = Double(teacher.rest[pos])
      var l = 0.0
      for j in 0..<vocab {
        let q = Double(expf(z[j] - m)) / sum
        d[j] = Float(scale * (inTop[j] ? q : q - rMass * q / restQ))
      }
      for i in 0..<k {
        let p = Double(teacher.prob[pos * k + i])
        let j = Int(teacher.index[pos * k + i])
        guard j >= 0 else { continue }
        if p > 0 { l += p * (log(p) - (Double(z[j] - m) - logSum)) }
        d[j] -= Float(scale * p)
        inTop[j] = false
      }
      if rMass > 0 { l += rMass * (log(rMass) - log(restQ)) }
      total += l
    }
    return total * scale
  }

  /// Cross-entropy of the next token: row `t` of each `tokens`-row sample predicts
  /// `targets[sample][t + 1]`; the last row of a sample has no target (zero gradient). The mean
  /// over the predicted rows; `dz` gets `(softmax − onehot) / count`.
  package static func ce(
    logits: UnsafePointer<Float>, samples: Int, tokens: Int, vocab: Int, targets: [[Int32]],
    dz: UnsafeMutablePointer<Float>
  ) -> Double {
    let count = samples * (tokens - 1)
    guard count > 0 else { return 0 }
    let scale = 1 / Double(count)
    var total = 0.0
    for s in 0..<samples {
      for t in 0..<tokens {
        let r = s * tokens + t
        let z = logits + r * vocab, d = dz + r * vocab
        guard t + 1 < tokens else {
          d.update(repeating: 0, count: vocab)
          continue
        }
        var m = -Float.infinity
        for j in 0..<vocab { m = max(m, z[j]) }
        var sum = 0.0
        for j in 0..<vocab { sum += Double(expf(z[j] - m)) }
        let y = Int(targets[s][t + 1])
        total += log(sum) - Double(z[y] - m)
        for j in 0..<vocab { d[j] = Float(scale * Double(expf(z[j] - m)) / sum) }
        d[y] -= Float(scale)
      }
    }
    return total * scale
  }
}
