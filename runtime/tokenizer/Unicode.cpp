//===- Unicode.cpp - UTF-8, categories and the byte-level alphabet ---------===//

#include "Unicode.h"

#include <algorithm>
#include <array>

namespace hasten::tokenizer {
namespace {

struct CodePointRange {
  uint32_t first, last;
};
struct CaseMapping {
  uint32_t codePoint;
  const char *utf8;
};

#include "UnicodeTables.inc"

template <size_t N>
bool inRanges(const CodePointRange (&ranges)[N], uint32_t c) {
  const CodePointRange *it = std::upper_bound(
      ranges, ranges + N, c, [](uint32_t value, const CodePointRange &r) { return value < r.first; });
  return it != ranges && c <= (it - 1)->last;
}

/// Bytes that are printable as themselves in GPT-2's alphabet.
bool printableByte(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

struct ByteAlphabet {
  std::array<uint32_t, 256> toChar;
  ByteAlphabet() {
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b)
      toChar[b] = printableByte(b) ? b : next++;
  }
};
const ByteAlphabet &alphabet() {
  static const ByteAlphabet table;
  return table;
}

template <size_t N>
std::string mapCase(const CaseMapping (&table)[N], std::string_view text, bool upper) {
  std::string out;
  out.reserve(text.size());
  for (const CodePoint &cp : decodeUtf8(text)) {
    uint32_t c = cp.value;
    if (c < 0x80) {
      out += static_cast<char>(upper && c >= 'a' && c <= 'z'   ? c - 32
                               : !upper && c >= 'A' && c <= 'Z' ? c + 32
                                                                : c);
      continue;
    }
    const CaseMapping *it = std::lower_bound(
        table, table + N, c, [](const CaseMapping &m, uint32_t v) { return m.codePoint < v; });
    if (it != table + N && it->codePoint == c)
      out += it->utf8;
    else
      out.append(text.substr(cp.offset, cp.length));
  }
  return out;
}

} // namespace

std::string toUpper(std::string_view text) { return mapCase(kUpperMap, text, true); }
std::string toLower(std::string_view text) { return mapCase(kLowerMap, text, false); }

std::vector<CodePoint> decodeUtf8(std::string_view text) {
  std::vector<CodePoint> out;
  out.reserve(text.size());
  const auto *s = reinterpret_cast<const unsigned char *>(text.data());
  size_t n = text.size();
  for (size_t i = 0; i < n;) {
    unsigned char b = s[i];
    uint32_t value;
    size_t length;
    uint32_t minimum;
    if (b < 0x80) {
      out.push_back({b, i, 1});
      ++i;
      continue;
    } else if ((b & 0xE0) == 0xC0) {
      value = b & 0x1F, length = 2, minimum = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      value = b & 0x0F, length = 3, minimum = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
      value = b & 0x07, length = 4, minimum = 0x10000;
    } else {
      out.push_back({0xFFFD, i, 1});
      ++i;
      continue;
    }
    bool ok = i + length <= n;
    for (size_t k = 1; ok && k < length; ++k) {
      ok = (s[i + k] & 0xC0) == 0x80;
      value = (value << 6) | (s[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid too.
    if (!ok || value < minimum || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) {
      out.push_back({0xFFFD, i, 1});
      ++i;
      continue;
    }
    out.push_back({value, i, length});
    i += length;
  }
  return out;
}

void appendUtf8(std::string &out, uint32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

size_t completeUtf8Prefix(std::string_view bytes) {
  // Look back at most three bytes for the lead byte of the last sequence.
  size_t n = bytes.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    auto b = static_cast<unsigned char>(bytes[n - back]);
    if ((b & 0xC0) == 0x80)
      continue; // a continuation byte: keep looking for its lead
    size_t want = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3
                                                   : (b & 0xF8) == 0xF0     ? 4
                                                                            : 1;
    return back < want ? n - back : n;
  }
  return n;
}

bool isLetter(uint32_t c) {
  if (c < 0x80)
    return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
  return inRanges(kLetterRanges, c);
}
bool isNumber(uint32_t c) {
  if (c < 0x80)
    return c >= '0' && c <= '9';
  return inRanges(kNumberRanges, c);
}
bool isWhitespace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}
bool mayChangeUnderNfc(uint32_t c) { return c >= 0x80 && inRanges(kNfcUnstableRanges, c); }

uint32_t byteToChar(uint8_t byte) { return alphabet().toChar[byte]; }
int charToByte(uint32_t c) {
  if (c < 256 && printableByte(static_cast<int>(c)))
    return static_cast<int>(c);
  // The others are 256 + their rank among the non-printable bytes.
  if (c < 256 || c >= 256 + 68)
    return -1;
  uint32_t rank = c - 256;
  for (int b = 0; b < 256; ++b)
    if (!printableByte(b) && rank-- == 0)
      return b;
  return -1;
}

} // namespace hasten::tokenizer
