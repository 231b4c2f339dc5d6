import QoptIR

/// `verify`: checks the module (types, shapes, SSA order, weights) and fails on any problem.
package let verifyPass = Pass("verify", summary: "check types, shapes, SSA order and weight references", options: NoOptions.self, preserves: ["*"]) {
  module, _, _ in
  try module.verify()
}
