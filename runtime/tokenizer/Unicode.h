//===- Unicode.h - what the tokenizers need to know about Unicode ----------===//
//
// UTF-8 decoding and encoding, the general categories the pre-tokenizers
// split by, and GPT-2's byte-to-character alphabet for byte-level BPE.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_RUNTIME_TOKENIZER_UNICODE_H
#define HASTEN_RUNTIME_TOKENIZER_UNICODE_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hasten::tokenizer {

/// A decoded code point and the bytes it spans in the text.
struct CodePoint {
  uint32_t value;
  size_t offset;
  size_t length;
};

/// Decodes `text` as UTF-8. Invalid bytes become U+FFFD, one per byte, so
/// every byte of the text belongs to exactly one code point.
std::vector<CodePoint> decodeUtf8(std::string_view text);
void appendUtf8(std::string &out, uint32_t codePoint);
/// The length of the longest prefix of `bytes` that does not end inside a
/// UTF-8 sequence that more bytes could still complete.
size_t completeUtf8Prefix(std::string_view bytes);

bool isLetter(uint32_t c);     // \p{L}
bool isNumber(uint32_t c);     // \p{N}
bool isWhitespace(uint32_t c); // \s: Unicode White_Space
/// Whether NFC might change `c` or merge it into the character before it;
/// text without such characters is its own NFC form.
bool mayChangeUnderNfc(uint32_t c);

/// Python's str.upper() and str.lower() (full case mappings: "ß" is "SS").
std::string toUpper(std::string_view text);
std::string toLower(std::string_view text);

/// GPT-2's printable stand-in for each byte (bytes_to_unicode), and back.
uint32_t byteToChar(uint8_t byte);
/// The byte a stand-in character represents, or -1.
int charToByte(uint32_t c);

} // namespace hasten::tokenizer

#endif // HASTEN_RUNTIME_TOKENIZER_UNICODE_H
