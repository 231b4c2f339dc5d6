import QoptIR
import Synchronization
import Testing

/// The import/emit phases (`Progress.transfer`): what a terminal and a log see.

private final class Captured: Sendable {
  let text = Mutex("")
  var value: String { text.withLock { $0 } }
  func append(_ s: String) { text.withLock { $0 += s } }
}

private func run(_ style: Progress.Style, fail: Bool = false) -> String {
  let out = Captured()
  let p = Progress(style: style, sink: { out.append($0) })
  _ = try? p.transfer(
    "emit out.gguf",
    {
      p.expect(bytes: 4 << 20)
      p.advance(bytes: 1 << 20)
      if fail { throw StorageError(file: "out.gguf", offset: nil, message: "disk full") }
      p.advance(bytes: 3 << 20)
    },
    closing: { seconds, bytes in
      "emit: out.gguf, \(Progress.mebibytes(bytes)) MiB in \(Progress.duration(seconds))"
    })
  return out.value
}

@Test func aLogGetsOneLinePerPhase() {
  let text = run(.lines)
  #expect(text.hasPrefix("emit: out.gguf, 4.0 MiB in "))
  #expect(text.split(separator: "\n").count == 1)
  #expect(!text.contains("\r") && !text.contains("\u{1b}"))
}

@Test func aTerminalGetsAStatusLineWithETAThenTheClosingLine() {
  let text = run(.terminal)
  // The first advance shows 1 of 4 MiB; later ones within 0.1 s are not redrawn.
  #expect(text.hasPrefix("\r\u{1b}[Kemit out.gguf 1.0/4.0 MiB (25%)"))
  #expect(text.contains("elapsed, ETA "))
  #expect(text.contains("\r\u{1b}[Kemit: out.gguf, 4.0 MiB in "))
  #expect(text.hasSuffix(" s\n"))
}

@Test func quietPrintsNothing() {
  #expect(run(.quiet).isEmpty)
}

@Test func aFailedPhaseHasNoClosingLine() {
  #expect(run(.lines, fail: true).isEmpty)
  #expect(!run(.terminal, fail: true).contains("emit: "))
}

@Test func bytesOutsideAPhaseAreIgnored() {
  let out = Captured()
  let p = Progress(style: .terminal, sink: { out.append($0) })
  p.expect(bytes: 10)
  p.advance(bytes: 10)
  #expect(out.value.isEmpty)
}

@Test func mebibytesHaveOneDecimal() {
  #expect(Progress.mebibytes(0) == "0.0")
  #expect(Progress.mebibytes(1_572_864) == "1.5")
  #expect(Progress.mebibytes(10 << 30) == "10240.0")
}
