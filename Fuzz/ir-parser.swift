// fuzz-modules: QoptSupport QoptIR
import QoptIR

/// IR text → parse → verify → print → parse: nothing may trap, and a module that parses must
/// print to text that parses back to the same print.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIRParser(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  guard let text = String(validating: UnsafeBufferPointer(start: data, count: size), as: UTF8.self) else { return 0 }
  guard let m = try? Parser.parse(text, file: "fuzz.ir") else { return 0 }
  _ = Verifier(checkWeights: true).diagnose(m)
  let printed = Printer().print(m)
  let again: Module
  do { again = try Parser.parse(printed, file: "again.ir") } catch {
    fatalError("printed module does not parse: \(error)\n\(printed)")
  }
  if Printer().print(again) != printed { fatalError("print is not a fixed point:\n\(printed)") }
  return 0
}
