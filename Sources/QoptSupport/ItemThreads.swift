import Dispatch
import Synchronization

/// Runs work over many items of very different sizes — a model's tensors — on several threads.
///
/// Why: a model has hundreds of small tensors (a 135M model's k/v projections take a tenth of a
/// millisecond to round or encode) and a few large ones. Splitting every item across the
/// threads puts a join of the threads after each one, and the small ones are mostly joins;
/// giving every item to one thread leaves the others idle while a large one runs. So large
/// items get all the threads one after another, and the small ones go whole to the threads,
/// each thread taking the next from a shared counter. Each item's result must not depend on
/// the thread that makes it (what `rtn` and the GGUF writer guarantee), so the output is the
/// same with any count.
public enum ItemThreads {
  /// Calls `body(i, t)` once for each `i` in `0..<count`: the items `isLarge(i)` first, one at
  /// a time with `t = threads`, then the rest with `t = 1` on up to `threads` workers. With one
  /// thread, every item in order with `t = 1`. After the first error no further item starts,
  /// and that error is thrown once the running ones are done.
  public static func run<E: Error>(
    count: Int, threads: Int, isLarge: (Int) -> Bool,
    _ body: (_ item: Int, _ threads: Int) throws(E) -> Void
  ) throws(E) {
    let threads = max(1, threads)
    let small = (0..<count).filter { threads > 1 && !isLarge($0) }
    let smallSet = Set(small)
    for i in 0..<count where !smallSet.contains(i) { try body(i, threads) }
    guard !small.isEmpty else { return }
    let next = Atomic<Int>(0)
    let failure = Mutex<E?>(nil)
    // safe: `body` outlives concurrentPerform, which returns only when every worker is done.
    nonisolated(unsafe) let work = body
    DispatchQueue.concurrentPerform(iterations: min(threads, small.count)) { _ in
      while failure.withLock({ $0 == nil }) {
        let k = next.wrappingAdd(1, ordering: .relaxed).oldValue
        guard k < small.count else { return }
        do throws(E) {
          try work(small[k], 1)
        } catch {
          failure.withLock { if $0 == nil { $0 = error } }
        }
      }
    }
    if let e = failure.withLock({ $0 }) { throw e }
  }
}
