/// A `re:` name pattern (compressed-tensors `targets`/`ignore`, GGUF type overrides, pass
/// `targets`), matched in time linear in the name for every pattern.
///
/// Why not `Regex`: the standard library's engine backtracks, so a pattern such as `(a+)+b` —
/// which a config.json downloaded from anywhere may carry — takes exponential time on a name
/// of a few dozen characters. This is the subset of Python's `re` that those patterns use,
/// compiled to a Thompson NFA and run as a Pike VM (every thread advanced in lock step, no
/// backtracking), as RE2 does:
///
/// - literals, `.`, classes `[a-z_]`, `[^…]`, escapes `\d \D \w \W \s \S \. \\ \t \n` and any
///   escaped punctuation;
/// - groups `(…)`, `(?:…)`, `(?P<name>…)` (no captures are reported), alternation `|`;
/// - quantifiers `* + ? {n} {n,} {n,m}` and their lazy forms (laziness cannot change whether a
///   name matches);
/// - anchors `^`, `$`.
///
/// Back-references and look-around have no linear-time form: they are rejected with a message.
public struct NamePattern: Sendable, Equatable {
  public let source: String
  private let program: [Inst]

  /// The longest pattern accepted, and the largest compiled program (counted repeats expand).
  public static let maxPatternLength = 1_000
  public static let maxProgramSize = 20_000

  public struct SyntaxError: Error, CustomStringConvertible, Sendable {
    public let pattern: String
    /// Character offset in the pattern.
    public let offset: Int
    public let message: String
    public var description: String { "invalid regex '\(pattern)' at character \(offset): \(message)" }
  }

  public init(_ source: String) throws(SyntaxError) {
    self.source = source
    guard source.count <= Self.maxPatternLength else {
      throw SyntaxError(pattern: source, offset: Self.maxPatternLength, message: "longer than \(Self.maxPatternLength) characters")
    }
    var p = PatternParser(pattern: source)
    let node = try p.parseAll()
    var c = Compiler(limit: Self.maxProgramSize, pattern: source)
    try c.emit(node)
    c.program.append(.match)
    program = c.program
  }

  public static func == (a: NamePattern, b: NamePattern) -> Bool { a.source == b.source }

  /// Python's `re.match`: a match starting at the beginning of `name` (it need not reach the end).
  public func matchesPrefix(_ name: String) -> Bool { run(Array(name.unicodeScalars), anchoredStart: true, needEnd: false) }

  /// Python's `re.search`: a match anywhere in `name`.
  public func search(_ name: String) -> Bool { run(Array(name.unicodeScalars), anchoredStart: false, needEnd: false) }

  /// Python's `re.fullmatch`: the whole of `name`.
  public func matchesWhole(_ name: String) -> Bool { run(Array(name.unicodeScalars), anchoredStart: true, needEnd: true) }

  // MARK: - Pike VM

  private func run(_ s: [Unicode.Scalar], anchoredStart: Bool, needEnd: Bool) -> Bool {
    var current = ThreadList(capacity: program.count)
    var next = ThreadList(capacity: program.count)
    for i in 0...s.count {
      if i == 0 || !anchoredStart {
        if add(&current, pc: 0, at: i, of: s) && !needEnd { return true }
      }
      if current.isEmpty { if anchoredStart { return false } else { continue } }
      next.clear()
      for k in 0..<current.count {
        let pc = current.dense[k]
        switch program[pc] {
        case .match:
          if !needEnd || i == s.count { return true }
        case .char(let set):
          if i < s.count, set.contains(s[i]) {
            if add(&next, pc: pc + 1, at: i + 1, of: s) && !needEnd { return true }
          }
        default: break  // control instructions were followed when added
        }
      }
      swap(&current, &next)
    }
    return current.dense.prefix(current.count).contains { program[$0] == .match }
  }

  /// Adds the thread at `pc` and everything reachable from it without consuming a character;
  /// returns whether a `match` was reached (so prefix matching can stop early).
  private func add(_ list: inout ThreadList, pc start: Int, at i: Int, of s: [Unicode.Scalar]) -> Bool {
    var stack = [start]
    var matched = false
    while let pc = stack.popLast() {
      guard list.insert(pc) else { continue }
      switch program[pc] {
      case .jump(let t): stack.append(t)
      case .split(let a, let b):
        stack.append(b)
        stack.append(a)
      case .atStart: if i == 0 { stack.append(pc + 1) }
      case .atEnd: if i == s.count { stack.append(pc + 1) }
      case .match: matched = true
      case .char: break
      }
    }
    return matched
  }
}

// MARK: - Program

private enum Inst: Equatable {
  case char(CharSet)
  case split(Int, Int)
  case jump(Int)
  case atStart, atEnd
  case match
}

/// A set of scalars: ranges, class escapes, negation.
private struct CharSet: Equatable {
  var ranges: [ClosedRange<UInt32>] = []
  var classes: [Character] = []  // "d", "D", "w", "W", "s", "S", "." (any)
  var negated = false

  func contains(_ c: Unicode.Scalar) -> Bool {
    var hit = ranges.contains { $0.contains(c.value) }
    if !hit {
      hit = classes.contains { k in
        switch k {
        case ".": return c != "\n"
        case "d": return ("0"..."9").contains(c)
        case "D": return !("0"..."9").contains(c)
        case "w": return c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_" || c.properties.numericType != nil
        case "W": return !(c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_" || c.properties.numericType != nil)
        case "s": return c.properties.isWhitespace
        default: return !c.properties.isWhitespace  // "S"
        }
      }
    }
    return hit != negated
  }
}

/// Visited-set of program counters for one step (sparse set: O(1) insert and clear).
private struct ThreadList {
  var dense: [Int]
  var sparse: [Int]
  var count = 0

  init(capacity: Int) {
    dense = [Int](repeating: 0, count: capacity)
    sparse = [Int](repeating: 0, count: capacity)
  }

  var isEmpty: Bool { count == 0 }
  mutating func clear() { count = 0 }

  /// Inserts `pc`; false when it was there already.
  mutating func insert(_ pc: Int) -> Bool {
    let s = sparse[pc]
    if s < count && dense[s] == pc { return false }
    sparse[pc] = count
    dense[count] = pc
    count += 1
    return true
  }
}

// MARK: - Parser

private indirect enum Node {
  case empty
  case set(CharSet)
  case concat([Node])
  case alt([Node])
  case repeatNode(Node, min: Int, max: Int?)
  case atStart, atEnd
}

private struct PatternParser {
  let pattern: String
  let chars: [Unicode.Scalar]
  var pos = 0

  init(pattern: String) {
    self.pattern = pattern
    chars = Array(pattern.unicodeScalars)
  }

  func fail(_ m: String, at: Int? = nil) -> NamePattern.SyntaxError {
    NamePattern.SyntaxError(pattern: pattern, offset: at ?? pos, message: m)
  }

  var peek: Unicode.Scalar? { pos < chars.count ? chars[pos] : nil }

  mutating func parseAll() throws(NamePattern.SyntaxError) -> Node {
    let n = try alternation(depth: 0)
    guard pos == chars.count else { throw fail("unbalanced ')'") }
    return n
  }

  mutating func alternation(depth: Int) throws(NamePattern.SyntaxError) -> Node {
    guard depth < 100 else { throw fail("groups nested more than 100 deep") }
    var branches = [try concatenation(depth: depth)]
    while peek == "|" {
      pos += 1
      branches.append(try concatenation(depth: depth))
    }
    return branches.count == 1 ? branches[0] : .alt(branches)
  }

  mutating func concatenation(depth: Int) throws(NamePattern.SyntaxError) -> Node {
    var items: [Node] = []
    while let c = peek, c != "|", c != ")" {
      var atom = try self.atom(depth: depth)
      while let q = peek, "*+?{".unicodeScalars.contains(q) {
        let at = pos
        var (lo, hi): (Int, Int?) = (0, nil)
        switch q {
        case "*": (lo, hi) = (0, nil); pos += 1
        case "+": (lo, hi) = (1, nil); pos += 1
        case "?": (lo, hi) = (0, 1); pos += 1
        default:
          // Not a count: a literal '{', which the next atom reads (as Python does).
          guard let r = try counted() else { break }
          (lo, hi) = r
        }
        if pos == at { break }
        if case .atStart = atom { throw fail("nothing to repeat", at: at) }
        if case .atEnd = atom { throw fail("nothing to repeat", at: at) }
        if peek == "?" { pos += 1 }  // lazy: same set of matching names
        if peek == "+" { throw fail("possessive quantifiers are not supported") }
        atom = .repeatNode(atom, min: lo, max: hi)
      }
      items.append(atom)
    }
    return items.isEmpty ? .empty : items.count == 1 ? items[0] : .concat(items)
  }

  /// `{n}`, `{n,}`, `{n,m}`; nil (a literal `{`) when what follows is not a count, as in Python.
  mutating func counted() throws(NamePattern.SyntaxError) -> (Int, Int?)? {
    let start = pos
    var i = pos + 1
    func number() -> Int? {
      var v = 0, digits = 0
      while i < chars.count, let d = Int(String(chars[i])), ("0"..."9").contains(chars[i]) {
        v = min(v * 10 + d, 100_000)
        digits += 1
        i += 1
      }
      return digits > 0 ? v : nil
    }
    let lo = number()
    var hi: Int?? = .some(lo)
    if i < chars.count, chars[i] == "," {
      i += 1
      hi = .some(number())
    }
    guard i < chars.count, chars[i] == "}", lo != nil || hi != .some(nil) else { return nil }
    pos = i + 1
    let l = lo ?? 0
    let h = hi ?? nil
    if let h, h < l { throw fail("repeat count {\(l),\(h)} has min above max", at: start) }
    return (l, h)
  }

  mutating func atom(depth: Int) throws(NamePattern.SyntaxError) -> Node {
    let c = chars[pos]
    switch c {
    case "(":
      let open = pos
      pos += 1
      if peek == "?" {
        if pos + 1 < chars.count, chars[pos + 1] == ":" {
          pos += 2
        } else if pos + 2 < chars.count, chars[pos + 1] == "P", chars[pos + 2] == "<" {
          pos += 3
          while let k = peek, k != ">" { pos += 1 }
          guard peek == ">" else { throw fail("unterminated group name", at: open) }
          pos += 1
        } else {
          throw fail("'(?' groups other than (?:…) and (?P<name>…) — look-around, flags — are not supported", at: open)
        }
      }
      let inner = try alternation(depth: depth + 1)
      guard peek == ")" else { throw fail("missing ')'", at: open) }
      pos += 1
      return inner
    case ")": throw fail("unbalanced ')'")
    case "^": pos += 1; return .atStart
    case "$": pos += 1; return .atEnd
    case ".": pos += 1; return .set(CharSet(classes: ["."]))
    case "[": return .set(try charClass())
    case "\\": return .set(try escape(inClass: false))
    case "*", "+", "?": throw fail("nothing to repeat")
    default:
      pos += 1
      return .set(CharSet(ranges: [c.value...c.value]))
    }
  }

  mutating func escape(inClass: Bool) throws(NamePattern.SyntaxError) -> CharSet {
    pos += 1
    guard let e = peek else { throw fail("pattern ends with '\\'") }
    pos += 1
    switch e {
    case "d", "D", "w", "W", "s", "S": return CharSet(classes: [Character(e)])
    case "t": return CharSet(ranges: [9...9])
    case "n": return CharSet(ranges: [10...10])
    case "r": return CharSet(ranges: [13...13])
    case "1"..."9": throw fail("back-references have no linear-time matcher; not supported", at: pos - 2)
    case "A", "Z", "b", "B", "z", "G": throw fail("'\\\(e)' is not supported", at: pos - 2)
    default:
      if e.properties.isAlphabetic || ("0"..."9").contains(e) { throw fail("unknown escape '\\\(e)'", at: pos - 2) }
      return CharSet(ranges: [e.value...e.value])
    }
  }

  mutating func charClass() throws(NamePattern.SyntaxError) -> CharSet {
    let open = pos
    pos += 1
    var set = CharSet()
    if peek == "^" {
      set.negated = true
      pos += 1
    }
    var first = true
    while let c = peek, c != "]" || first {
      first = false
      var lo: UInt32
      if c == "\\" {
        let e = try escape(inClass: true)
        if !e.classes.isEmpty {
          set.classes += e.classes
          continue
        }
        lo = e.ranges[0].lowerBound
      } else {
        lo = c.value
        pos += 1
      }
      if peek == "-", pos + 1 < chars.count, chars[pos + 1] != "]" {
        pos += 1
        var hi: UInt32
        if peek == "\\" {
          let e = try escape(inClass: true)
          guard e.classes.isEmpty else { throw fail("a class escape cannot end a range") }
          hi = e.ranges[0].lowerBound
        } else {
          hi = chars[pos].value
          pos += 1
        }
        guard lo <= hi else { throw fail("bad character range", at: open) }
        set.ranges.append(lo...hi)
      } else {
        set.ranges.append(lo...lo)
      }
    }
    guard peek == "]" else { throw fail("unterminated character class", at: open) }
    pos += 1
    return set
  }
}

// MARK: - Compiler

private struct Compiler {
  var program: [Inst] = []
  let limit: Int
  let pattern: String

  init(limit: Int, pattern: String) {
    self.limit = limit
    self.pattern = pattern
  }

  mutating func push(_ i: Inst) throws(NamePattern.SyntaxError) -> Int {
    guard program.count < limit else {
      throw NamePattern.SyntaxError(pattern: pattern, offset: 0, message: "compiles to more than \(limit) steps (repeat counts too large)")
    }
    program.append(i)
    return program.count - 1
  }

  mutating func emit(_ n: Node) throws(NamePattern.SyntaxError) {
    switch n {
    case .empty: break
    case .set(let s): _ = try push(.char(s))
    case .atStart: _ = try push(.atStart)
    case .atEnd: _ = try push(.atEnd)
    case .concat(let xs): for x in xs { try emit(x) }
    case .alt(let xs):
      var jumps: [Int] = []
      for (k, x) in xs.enumerated() {
        if k + 1 < xs.count {
          let split = try push(.split(0, 0))
          try emit(x)
          jumps.append(try push(.jump(0)))
          program[split] = .split(split + 1, program.count)
        } else {
          try emit(x)
        }
      }
      for j in jumps { program[j] = .jump(program.count) }
    case .repeatNode(let x, let lo, let hi):
      for _ in 0..<lo { try emit(x) }
      if let hi {
        // Optional copies, each skippable: x? x? … (hi − lo of them).
        var splits: [Int] = []
        for _ in lo..<hi {
          splits.append(try push(.split(0, 0)))
          try emit(x)
        }
        for s in splits { program[s] = .split(s + 1, program.count) }
      } else {
        // x*: L: split(body, out); body; jump L.
        let split = try push(.split(0, 0))
        try emit(x)
        _ = try push(.jump(split))
        program[split] = .split(split + 1, program.count)
      }
    }
  }
}
