//===- PreTokenizer.cpp - the regex splits of byte-level BPE tokenizers ----===//

#include "PreTokenizer.h"

#include "Unicode.h"

namespace hasten::tokenizer {
namespace {

constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

/// Matches the alternatives at one position of a code point array.
class Scanner {
public:
  Scanner(const std::vector<CodePoint> &cps, SplitPattern pattern)
      : cps(cps), pattern(pattern) {}

  /// The number of code points the expression matches at `i` (at least 1:
  /// every expression here ends in \s+ and the other classes cover the rest).
  size_t match(size_t i) const {
    if (size_t n = contraction(i))
      return n;
    if (pattern == SplitPattern::Gpt2) {
      if (size_t n = optionalSpaceThen(i, &Scanner::letter))
        return n;
      if (size_t n = optionalSpaceThen(i, &Scanner::number))
        return n;
      if (size_t n = optionalSpaceThen(i, &Scanner::other))
        return n;
    } else {
      // [^\r\n\p{L}\p{N}]?\p{L}+
      if (i + 1 < size() && !newline(i) && !letter(i) && !number(i) && letter(i + 1))
        return 1 + runOf(i + 1, &Scanner::letter);
      if (letter(i))
        return runOf(i, &Scanner::letter);
      // \p{N}{1,3} or \p{N}
      if (number(i)) {
        size_t limit = pattern == SplitPattern::Llama3 ? 3 : 1;
        size_t n = 1;
        while (n < limit && number(i + n))
          ++n;
        return n;
      }
      // " ?[^\s\p{L}\p{N}]+[\r\n]*"
      if (size_t n = optionalSpaceThen(i, &Scanner::other)) {
        while (i + n < size() && newline(i + n))
          ++n;
        return n;
      }
      // \s*[\r\n]+: the whitespace run up to its last line break.
      size_t run = runOf(i, &Scanner::space);
      for (size_t k = run; k > 0; --k)
        if (newline(i + k - 1))
          return k;
    }
    // \s+(?!\S): a whitespace run, less its last character when a
    // non-space follows (that one joins the next word).
    size_t run = runOf(i, &Scanner::space);
    if (run > 0) {
      if (i + run == size() || run == 1)
        return run;
      return run - 1;
    }
    return 1; // unreachable for valid classes; keeps progress guaranteed
  }

private:
  size_t size() const { return cps.size(); }
  uint32_t at(size_t i) const { return i < size() ? cps[i].value : 0; }
  bool letter(size_t i) const { return i < size() && isLetter(at(i)); }
  bool number(size_t i) const { return i < size() && isNumber(at(i)); }
  bool space(size_t i) const { return i < size() && isWhitespace(at(i)); }
  bool newline(size_t i) const { return i < size() && (at(i) == '\r' || at(i) == '\n'); }
  bool other(size_t i) const { return i < size() && !space(i) && !letter(i) && !number(i); }

  size_t runOf(size_t i, bool (Scanner::*cls)(size_t) const) const {
    size_t n = 0;
    while ((this->*cls)(i + n))
      ++n;
    return n;
  }
  /// " ?X+": an optional U+0020, then one or more of class X.
  size_t optionalSpaceThen(size_t i, bool (Scanner::*cls)(size_t) const) const {
    if (at(i) == ' ' && (this->*cls)(i + 1))
      return 1 + runOf(i + 1, cls);
    return runOf(i, cls);
  }
  /// 's 't 're 've 'm 'll 'd (case-insensitive after Llama 3).
  size_t contraction(size_t i) const {
    if (at(i) != '\'')
      return 0;
    bool fold = pattern != SplitPattern::Gpt2;
    auto is = [&](size_t k, char c) {
      uint32_t v = at(k);
      return v == static_cast<uint32_t>(c) ||
             (fold && v < 0x80 && v >= 'A' && v <= 'Z' && v + 32 == static_cast<uint32_t>(c));
    };
    for (const char *suffix : {"s", "t", "re", "ve", "m", "ll", "d"}) {
      size_t n = 0;
      while (suffix[n] && is(i + 1 + n, suffix[n]))
        ++n;
      if (!suffix[n])
        return 1 + n;
    }
    return 0;
  }

  const std::vector<CodePoint> &cps;
  SplitPattern pattern;
};

} // namespace

std::optional<SplitPattern> recognizeSplitPattern(std::string_view regex) {
  for (SplitPattern p : {SplitPattern::Gpt2, SplitPattern::Llama3, SplitPattern::Qwen2})
    if (regex == splitPatternRegex(p))
      return p;
  return std::nullopt;
}

std::string_view splitPatternRegex(SplitPattern pattern) {
  switch (pattern) {
  case SplitPattern::Gpt2:
    return kGpt2Regex;
  case SplitPattern::Llama3:
    return kLlama3Regex;
  case SplitPattern::Qwen2:
    return kQwen2Regex;
  }
  return {};
}

std::vector<std::pair<size_t, size_t>> splitWords(std::string_view text, SplitPattern pattern) {
  std::vector<CodePoint> cps = decodeUtf8(text);
  Scanner scanner(cps, pattern);
  std::vector<std::pair<size_t, size_t>> words;
  for (size_t i = 0; i < cps.size();) {
    size_t n = scanner.match(i);
    size_t begin = cps[i].offset;
    size_t last = i + n - 1;
    words.emplace_back(begin, cps[last].offset + cps[last].length);
    i += n;
  }
  return words;
}

} // namespace hasten::tokenizer
