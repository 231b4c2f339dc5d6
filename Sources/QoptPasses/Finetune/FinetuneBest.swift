/// `finetune`'s validation record: the loss of every validated step on the held-out windows
/// and the parameters of the best one, which are what the pass returns. Step 0 is the input
/// model; while it is the best, `parameters` is nil and the pass leaves the weights as they
/// came, byte for byte.
package struct FinetuneBest {
  package init() {}

  /// Each validated step (0: before training) and its validation loss, in order.
  package var history: [(step: Int, loss: Double)] = []
  /// The best step so far and its loss (`infinity` before the first validation).
  package var step = 0
  package var loss = Double.infinity
  /// Per trainable linear (in model order), the parameters of `step`; nil for step 0.
  package var parameters: [[[Float]]]?

  /// Records step `step`'s validation loss; when it is lower than every earlier one (ties and
  /// NaN keep the earlier step), keeps the linears' current parameters. Returns whether it did.
  @discardableResult
  package mutating func record(step: Int, loss: Double, linears: [TrainableQuantLinear]) -> Bool {
    history.append((step, loss))
    guard loss < self.loss else { return false }
    self.step = step
    self.loss = loss
    parameters = step == 0 ? nil : linears.map(\.parameters)
    return true
  }
}
