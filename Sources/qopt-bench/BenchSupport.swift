#if canImport(Glibc)
  import Glibc
#endif

/// Monotonic seconds.
func seconds() -> Double {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Peak resident set size of this process so far, in bytes.
func peakRSS() -> Int {
  var u = rusage()
  getrusage(RUSAGE_SELF.rawValue, &u)
  return Int(u.ru_maxrss) * 1024
}

/// Current resident set size, in bytes (from /proc/self/statm).
func currentRSS() -> Int {
  guard let f = fopen("/proc/self/statm", "r") else { return 0 }
  defer { fclose(f) }
  var size = 0
  var resident = 0
  _ = withUnsafeMutablePointer(to: &size) { s in withUnsafeMutablePointer(to: &resident) { r in vfscanf_helper(f, s, r) } }
  return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
}

private func vfscanf_helper(_ f: UnsafeMutablePointer<FILE>, _ a: UnsafeMutablePointer<Int>, _ b: UnsafeMutablePointer<Int>) -> Int32 {
  var line = [CChar](repeating: 0, count: 256)
  guard fgets(&line, 256, f) != nil else { return 0 }
  let parts = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).split(separator: " ")
  if parts.count >= 2 {
    a.pointee = Int(parts[0]) ?? 0
    b.pointee = Int(parts[1]) ?? 0
  }
  return 2
}

/// Prints a table with a title, header and rows, columns padded to fit.
func printTable(_ title: String, _ header: [String], _ rows: [[String]]) {
  let widths = header.indices.map { i in ([header[i]] + rows.map { $0[i] }).map(\.count).max() ?? 0 }
  func line(_ cells: [String]) -> String {
    "| " + cells.enumerated().map { $1 + String(repeating: " ", count: widths[$0] - $1.count) }.joined(separator: " | ") + " |"
  }
  print("\n" + title)
  print(line(header))
  print("|" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "|") + "|")
  for r in rows { print(line(r)) }
}

func fmt(_ x: Double, _ digits: Int = 2) -> String {
  var p = 1.0
  for _ in 0..<digits { p *= 10 }
  let v = (x * p).rounded() / p
  var s = "\(v)"
  if let dot = s.firstIndex(of: ".") {
    let decimals = s.distance(from: dot, to: s.endIndex) - 1
    if decimals < digits { s += String(repeating: "0", count: digits - decimals) }
  }
  return s
}
