/// An in-process FileCheck with the LLVM subset qopt's tests use: `CHECK`, `CHECK-NEXT`,
/// `CHECK-NOT`, `CHECK-LABEL`, `CHECK-SAME`, `CHECK-EMPTY`, `{{regex}}`, `[[V:regex]]` captures
/// and `[[V]]` uses, any `--check-prefix`. Horizontal white space runs compare as one space.
///
/// Simplification: `CHECK-LABEL` matches like `CHECK` (it does not partition the input first).
public struct FileCheck {
  public enum Kind: String { case plain = "", next = "-NEXT", not = "-NOT", label = "-LABEL", same = "-SAME", empty = "-EMPTY" }

  public struct Directive {
    public var kind: Kind
    public var pattern: String
    public var line: Int
  }

  public let directives: [Directive]
  public let prefix: String

  /// Collects the directives for `prefix` from a check file's text.
  public init(checkFile text: String, prefix: String = "CHECK") {
    self.prefix = prefix
    var ds: [Directive] = []
    for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      for kind in [Kind.next, .not, .label, .same, .empty, .plain] {
        let tag = prefix + kind.rawValue + ":"
        guard let r = line.firstRange(of: tag) else { continue }
        // The tag must not be the tail of a longer word (e.g. MYCHECK: for prefix CHECK).
        if r.lowerBound > line.startIndex {
          let before = line[line.index(before: r.lowerBound)]
          if before.isLetter || before.isNumber || before == "-" || before == "_" { continue }
        }
        let pattern = line[r.upperBound...].drop { $0 == " " || $0 == "\t" }
        ds.append(Directive(kind: kind, pattern: String(pattern).trimmingTrailingSpace, line: i + 1))
        break
      }
    }
    directives = ds
  }

  /// Checks `input`; returns the failures (empty when everything matched).
  public func check(_ input: String) -> [String] {
    if directives.isEmpty { return ["no \(prefix): directives found"] }
    let lines = input.split(separator: "\n", omittingEmptySubsequences: false).map { canonical(String($0)) }
    var vars: [String: String] = [:]
    var lineNo = 0  // index of the line where the last match ended
    var col = 0  // offset in that line where the last match ended
    var matchedAny = false
    var pendingNots: [Directive] = []
    var failures: [String] = []

    func context(_ at: Int) -> String {
      guard at < lines.count else { return "<end of input>" }
      return "'\(lines[at])'"
    }

    for d in directives {
      if d.kind == .not { pendingNots.append(d); continue }
      if d.kind == .empty {
        let target = matchedAny ? lineNo + 1 : 0
        if target < lines.count, lines[target].isEmpty {
          lineNo = target; col = 0; matchedAny = true
        } else {
          failures.append("line \(d.line): \(prefix)-EMPTY: expected an empty line, found \(context(target))")
          return failures
        }
        continue
      }
      guard let re = compile(d.pattern, vars: vars) else {
        failures.append("line \(d.line): invalid pattern '\(d.pattern)'")
        return failures
      }
      var found: (line: Int, start: Int, end: Int, captures: [String: String])?
      switch d.kind {
      case .same:
        if let m = match(re, lines[safe: lineNo] ?? "", from: col) { found = (lineNo, m.0, m.1, m.2) }
      case .next:
        let target = matchedAny ? lineNo + 1 : 0
        if let m = match(re, lines[safe: target] ?? "", from: 0) { found = (target, m.0, m.1, m.2) }
      default:
        var l = lineNo
        var from = col
        while l < lines.count {
          if let m = match(re, lines[l], from: from) { found = (l, m.0, m.1, m.2); break }
          l += 1
          from = 0
        }
      }
      guard let f = found else {
        failures.append("line \(d.line): \(prefix)\(d.kind.rawValue): no match for '\(d.pattern)' after input line \(lineNo + 1) (\(context(lineNo)))")
        return failures
      }
      // Every pending CHECK-NOT must not occur between the previous match and this one.
      for n in pendingNots {
        if let hit = firstMatch(of: n, vars: vars, lines: lines, from: (lineNo, col), to: (f.line, f.start)) {
          failures.append("line \(n.line): \(prefix)-NOT: '\(n.pattern)' found at input line \(hit + 1): \(context(hit))")
        }
      }
      pendingNots = []
      for (k, v) in f.captures { vars[k] = v }
      lineNo = f.line
      col = f.end
      matchedAny = true
    }
    for n in pendingNots {
      if let hit = firstMatch(of: n, vars: vars, lines: lines, from: (lineNo, col), to: (lines.count, 0)) {
        failures.append("line \(n.line): \(prefix)-NOT: '\(n.pattern)' found at input line \(hit + 1): \(context(hit))")
      }
    }
    return failures
  }

  private func firstMatch(of d: Directive, vars: [String: String], lines: [String], from: (Int, Int), to: (Int, Int)) -> Int? {
    guard let re = compile(d.pattern, vars: vars) else { return nil }
    var l = from.0
    while l < lines.count && l <= to.0 {
      var line = lines[l]
      if l == to.0 { line = String(line.prefix(to.1)) }
      if match(re, line, from: l == from.0 ? from.1 : 0) != nil { return l }
      l += 1
    }
    return nil
  }

  /// Builds a regex from a FileCheck pattern: literal text, `{{re}}`, `[[V:re]]`, `[[V]]`.
  func compile(_ pattern: String, vars: [String: String]) -> Regex<AnyRegexOutput>? {
    var re = ""
    var s = Substring(canonical(pattern))
    while !s.isEmpty {
      if s.hasPrefix("{{"), let close = s.firstRange(of: "}}") {
        re += "(?:" + s[s.index(s.startIndex, offsetBy: 2)..<close.lowerBound] + ")"
        s = s[close.upperBound...]
      } else if s.hasPrefix("[["), let close = s.firstRange(of: "]]") {
        let body = s[s.index(s.startIndex, offsetBy: 2)..<close.lowerBound]
        if let colon = body.firstIndex(of: ":") {
          re += "(?<\(body[..<colon])>" + body[body.index(after: colon)...] + ")"
        } else {
          re += escape(vars[String(body)] ?? "\u{0}undefined-variable-\(body)")
        }
        s = s[close.upperBound...]
      } else {
        re += escape(String(s.first!))  // safe: s is not empty
        s = s.dropFirst()
      }
    }
    return try? Regex(re)
  }

  private func match(_ re: Regex<AnyRegexOutput>, _ line: String, from: Int) -> (Int, Int, [String: String])? {
    let chars = Array(line)
    guard from <= chars.count else { return nil }
    let sub = String(chars[from...])
    guard let m = try? re.firstMatch(in: sub) else { return nil }
    let start = sub.distance(from: sub.startIndex, to: m.range.lowerBound) + from
    let end = sub.distance(from: sub.startIndex, to: m.range.upperBound) + from
    var caps: [String: String] = [:]
    for e in m.output { if let n = e.name, let v = e.substring { caps[n] = String(v) } }
    return (start, end, caps)
  }

  private func escape(_ s: String) -> String {
    var out = ""
    for ch in s {
      if "\\^$.|?*+()[]{}/-".contains(ch) { out.append("\\") }
      out.append(ch)
    }
    return out
  }

  private func canonical(_ s: String) -> String {
    var out = ""
    var lastSpace = false
    for ch in s {
      if ch == " " || ch == "\t" {
        if !lastSpace { out.append(" ") }
        lastSpace = true
      } else {
        out.append(ch)
        lastSpace = false
      }
    }
    return out
  }
}

extension Array {
  subscript(safe i: Int) -> Element? { i >= 0 && i < count ? self[i] : nil }
}

extension String {
  var trimmingTrailingSpace: String {
    var s = Substring(self)
    while s.last == " " || s.last == "\t" || s.last == "\r" { s = s.dropLast() }
    return String(s)
  }
}
