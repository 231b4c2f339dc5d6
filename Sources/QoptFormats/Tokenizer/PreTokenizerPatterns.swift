/// The split patterns byte-level BPE tokenizers use, matched by hand (no regex engine), with
/// the same alternation order and backtracking results as the Oniguruma regexes Hugging Face
/// `tokenizers` runs. `Split` pre-tokenizers whose pattern is not one of these are refused.
public enum PreTokenizerPatterns {
  /// GPT-2 / ByteLevel(use_regex: true).
  public static let gpt2 = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
  /// Llama 3.
  public static let llama3 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
  /// Qwen2 (Llama 3's with single digits).
  public static let qwen2 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

  enum Kind: Sendable {
    case gpt2
    case llama3(maxDigits: Int)
  }

  static func kind(of pattern: String) -> Kind? {
    switch pattern {
    case gpt2: .gpt2
    case llama3: .llama3(maxDigits: 3)
    case qwen2: .llama3(maxDigits: 1)
    default: nil
    }
  }
}

@inline(__always) func isLetter(_ u: Unicode.Scalar) -> Bool {
  if u.value < 0x80 { return (u.value | 0x20) >= 0x61 && (u.value | 0x20) <= 0x7A }
  switch u.properties.generalCategory {
  case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
  default: return false
  }
}

@inline(__always) func isNumber(_ u: Unicode.Scalar) -> Bool {
  if u.value < 0x80 { return u.value >= 0x30 && u.value <= 0x39 }
  switch u.properties.generalCategory {
  case .decimalNumber, .letterNumber, .otherNumber: return true
  default: return false
  }
}

@inline(__always) func isSpace(_ u: Unicode.Scalar) -> Bool {
  if u.value < 0x80 { return u.value == 0x20 || (u.value >= 0x09 && u.value <= 0x0D) }
  return u.properties.isWhitespace
}

extension PreTokenizerPatterns.Kind {
  /// The length of the match starting at `i` (always ≥ 1 for `i < s.count`).
  func match(_ s: [Unicode.Scalar], _ i: Int) -> Int {
    switch self {
    case .gpt2: return matchGPT2(s, i)
    case .llama3(let maxDigits): return matchLlama3(s, i, maxDigits: maxDigits)
    }
  }

  /// Splits `s` into the pieces the pattern matches (Isolated behaviour: the text is tiled).
  func split(_ s: [Unicode.Scalar]) -> [Range<Int>] {
    var out: [Range<Int>] = []
    var i = 0
    while i < s.count {
      let n = Swift.max(1, match(s, i))
      out.append(i..<(i + n))
      i += n
    }
    return out
  }

  private func contraction(_ s: [Unicode.Scalar], _ i: Int, caseInsensitive: Bool) -> Int {
    guard s[i] == "'", i + 1 < s.count else { return 0 }
    func lower(_ u: Unicode.Scalar) -> Unicode.Scalar {
      caseInsensitive && u.value >= 0x41 && u.value <= 0x5A ? Unicode.Scalar(u.value + 0x20)! : u  // safe: ASCII
    }
    let a = lower(s[i + 1])
    if a == "s" || a == "t" || a == "m" || a == "d" { return 2 }
    guard i + 2 < s.count else { return 0 }
    let b = lower(s[i + 2])
    if (a == "r" && b == "e") || (a == "v" && b == "e") || (a == "l" && b == "l") { return 3 }
    return 0
  }

  private func run(_ s: [Unicode.Scalar], from j: Int, _ p: (Unicode.Scalar) -> Bool) -> Int {
    var k = j
    while k < s.count && p(s[k]) { k += 1 }
    return k - j
  }

  private func isOther(_ u: Unicode.Scalar) -> Bool { !isSpace(u) && !isLetter(u) && !isNumber(u) }

  /// `\s+(?!\S)|\s+` at `i` (s[i] is whitespace).
  private func spaces(_ s: [Unicode.Scalar], _ i: Int) -> Int {
    let n = run(s, from: i, isSpace)
    if i + n == s.count || n == 1 { return n }
    return n - 1
  }

  private func matchGPT2(_ s: [Unicode.Scalar], _ i: Int) -> Int {
    let c = contraction(s, i, caseInsensitive: false)
    if c > 0 { return c }
    let sp = s[i] == " " && i + 1 < s.count ? 1 : 0
    let first = s[i + sp]
    if isLetter(first) { return sp + run(s, from: i + sp, isLetter) }
    if isNumber(first) { return sp + run(s, from: i + sp, isNumber) }
    if isOther(first) { return sp + run(s, from: i + sp, isOther) }
    return spaces(s, i)
  }

  private func matchLlama3(_ s: [Unicode.Scalar], _ i: Int, maxDigits: Int) -> Int {
    let c = contraction(s, i, caseInsensitive: true)
    if c > 0 { return c }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if isLetter(s[i]) { return run(s, from: i, isLetter) }
    if s[i] != "\r" && s[i] != "\n" && !isNumber(s[i]) && i + 1 < s.count && isLetter(s[i + 1]) {
      return 1 + run(s, from: i + 1, isLetter)
    }
    // \p{N}{1,maxDigits}
    if isNumber(s[i]) { return Swift.min(maxDigits, run(s, from: i, isNumber)) }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    let sp = s[i] == " " && i + 1 < s.count ? 1 : 0
    if isOther(s[i + sp]) {
      let n = sp + run(s, from: i + sp, isOther)
      return n + run(s, from: i + n) { $0 == "\r" || $0 == "\n" }
    }
    // \s*[\r\n]+ : the whitespace run up to and including its last newline.
    let n = run(s, from: i, isSpace)
    var last = -1
    for k in i..<(i + n) where s[k] == "\r" || s[k] == "\n" { last = k }
    if last >= 0 { return last + 1 - i }
    return spaces(s, i)
  }
}
