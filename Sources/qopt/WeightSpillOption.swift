import ArgumentParser
import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// `-spill-weights`: whether the quantized weights passes make are written to disk as they are
/// made and read back mapped by the backend (`WeightSpill`), instead of held in memory.
///
/// `auto` spills when the model's float weights come to more than `autoThreshold` bytes (as f32,
/// the form passes work on): the unpacked i8 codes of such a model would rival a small machine's
/// memory, while below it spilling only adds writes. The spill folder sits beside `-o`
/// (`OUT.qopt-spill-PID`: same filesystem as the output, never a RAM-backed /tmp) and is removed
/// at the end; its files are unlinked as soon as they are mapped.
enum WeightSpillOption: String, ExpressibleByArgument, CaseIterable {
  case auto, always, never

  static let help = ArgumentHelp(
    "Write quantized weights to disk beside -o as passes make them (auto: when the model's f32 weights exceed 4 GiB).",
    valueName: "auto|always|never")

  static let autoThreshold = 4 << 30

  /// Attaches a spill folder to the module's weights when the policy asks for one; returns it
  /// so that `finish` can remove it.
  func attach(to module: Module, output: String?) -> WeightSpill? {
    guard let output, self != .never else { return nil }
    if self == .auto {
      var floatBytes = 0
      for name in module.weights.names {
        if case .dense(let t)? = module.weights[name], t.dtype.isFloat { floatBytes += t.count * 4 }
      }
      guard floatBytes > Self.autoThreshold else { return nil }
    }
    let trimmed = output.hasSuffix("/") ? String(output.dropLast()) : output
    let spill = WeightSpill(directory: "\(trimmed).qopt-spill-\(getpid())")
    module.weights.spill = spill
    return spill
  }

  /// Removes the (by now empty) spill folder; a write that failed is reported as a warning.
  static func finish(_ spill: WeightSpill?) -> String? {
    guard let spill else { return nil }
    rmdir(spill.directory)
    guard let e = spill.firstError else { return nil }
    return "warning: could not spill quantized weights to disk (kept in memory): \(e)\n"
  }
}
