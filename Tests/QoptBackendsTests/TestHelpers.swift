import Foundation

func mkdirCompat(_ path: String) -> Bool {
  (try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)) != nil
}

func listDirectory(_ path: String) -> [String] {
  ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
}

func removePath(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

/// Runs a command, returning (status, stdout+stderr).
func runProcess(_ exe: String, _ args: [String]) throws -> (Int32, String) {
  let p = Process()
  p.executableURL = URL(fileURLWithPath: exe)
  p.arguments = args
  let pipe = Pipe()
  p.standardOutput = pipe
  p.standardError = pipe
  try p.run()
  let data = pipe.fileHandleForReading.readDataToEndOfFile()
  p.waitUntilExit()
  return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
