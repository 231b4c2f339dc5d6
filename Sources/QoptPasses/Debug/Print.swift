import QoptIR

/// `print`: writes the module to stderr at this point of the pipeline (tensors elided).
let printPass = Pass("print", summary: "print the module to stderr (weights by reference)", options: NoOptions.self) {
  module, _, context in
  context.remark("module at this point of the pipeline:\n" + Printer(inlineWeightLimit: 0).print(module))
}
