//===- Strings.cpp - number <-> string conversions generated code calls ---===//
//
// Cast between numbers and ONNX string tensors (lib/Import/StringOps.cpp)
// calls these one element at a time with scalars only, so that the calls
// need no memref descriptors (the C interface names are those the LLVM
// lowering gives every external function of a module):
//
// - hasten_rt_format_float / hasten_rt_format_integer return the text of a
//   number 8 bytes at a time (chunk 0-3, little-endian, zero-padded) and
//   its length (chunk 4). Floats are written as numpy's str() writes them:
//   the shortest digits that read back to the same float or double,
//   positional from 1e-4 up to 1e16 ("0.039187793", "12.0"), scientific
//   outside ("1e-05", "1.5e+16"), and "nan", "inf", "-inf".
// - hasten_rt_parse_begin / _byte / _end parse one string: its bytes are
//   pushed one by one into a per-thread buffer and read at the end as ONNX
//   reads them (decimal or scientific, "INF", "+INF", "-INF" and "NaN" in
//   any case, surrounding spaces ignored). Text that is no number reads as
//   NaN: generated code has no way to fail.
//
//===----------------------------------------------------------------------===//

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

/// numpy's str() of a float (`single`: the shortest digits for a float,
/// else for a double).
std::string formatFloat(double value, bool single) {
  if (std::isnan(value))
    return "nan";
  if (std::isinf(value))
    return value < 0 ? "-inf" : "inf";
  if (value == 0)
    return std::signbit(value) ? "-0.0" : "0.0";
  char buffer[64];
  std::to_chars_result r =
      single ? std::to_chars(buffer, buffer + sizeof(buffer), static_cast<float>(value),
                             std::chars_format::scientific)
             : std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  std::string text(buffer, r.ptr);
  // d.ddde[+-]XX: the digits and the decimal exponent.
  bool negative = text[0] == '-';
  size_t start = negative ? 1 : 0;
  size_t e = text.find('e');
  std::string digits;
  for (size_t i = start; i < e; ++i)
    if (text[i] != '.')
      digits += text[i];
  int exponent = std::stoi(text.substr(e + 1));
  std::string out = negative ? "-" : "";
  double magnitude = std::fabs(value);
  if (magnitude >= 1e-4 && magnitude < 1e16) {
    if (exponent >= 0) {
      std::string whole = digits.substr(0, std::min<size_t>(digits.size(), exponent + 1));
      whole.append(exponent + 1 > (int)digits.size() ? exponent + 1 - digits.size() : 0, '0');
      std::string fraction =
          (int)digits.size() > exponent + 1 ? digits.substr(exponent + 1) : std::string("0");
      return out + whole + "." + fraction;
    }
    return out + "0." + std::string(-exponent - 1, '0') + digits;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1)
    out += "." + digits.substr(1);
  char exp[16];
  std::snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return out + exp;
}

/// Chunk `chunk` (0-3) of `text` as 8 little-endian bytes, or its length
/// (chunk 4).
int64_t chunkOf(const std::string &text, int32_t chunk) {
  if (chunk >= 4)
    return static_cast<int64_t>(std::min<size_t>(text.size(), 32));
  uint64_t word = 0;
  for (int k = 0; k < 8; ++k) {
    size_t at = static_cast<size_t>(chunk) * 8 + k;
    if (at < text.size())
      word |= static_cast<uint64_t>(static_cast<unsigned char>(text[at])) << (8 * k);
  }
  return static_cast<int64_t>(word);
}

thread_local std::string parseBuffer;

bool equalsIgnoringCase(const std::string &text, const char *word) {
  if (text.size() != std::strlen(word))
    return false;
  for (size_t i = 0; i < text.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(text[i])) != word[i])
      return false;
  return true;
}

/// ONNX's reading of a string as a number; NaN when it is none.
double parseNumber(std::string text, bool single) {
  size_t first = 0, last = text.size();
  while (first < last && std::isspace(static_cast<unsigned char>(text[first])))
    ++first;
  while (last > first && std::isspace(static_cast<unsigned char>(text[last - 1])))
    --last;
  text = text.substr(first, last - first);
  if (equalsIgnoringCase(text, "inf") || equalsIgnoringCase(text, "+inf"))
    return INFINITY;
  if (equalsIgnoringCase(text, "-inf"))
    return -INFINITY;
  if (equalsIgnoringCase(text, "nan"))
    return NAN;
  if (!text.empty() && text[0] == '+' && text.size() > 1 && text[1] != '-')
    text.erase(0, 1);
  const char *begin = text.data(), *end = text.data() + text.size();
  if (single) {
    float value = 0;
    std::from_chars_result r = std::from_chars(begin, end, value);
    if (r.ptr == end && r.ec == std::errc())
      return value;
    if (r.ptr != end || r.ec != std::errc::result_out_of_range)
      return NAN;
    // Beyond float's range: what the double rounds to (an infinity, a zero).
    return static_cast<float>(parseNumber(text, false));
  }
  double value = 0;
  std::from_chars_result r = std::from_chars(begin, end, value);
  if (r.ptr == end && r.ec == std::errc())
    return value;
  if (r.ptr != end || r.ec != std::errc::result_out_of_range)
    return NAN;
  // Beyond double's range: strtod says which way (the text is a valid
  // number in C's format, which is the one from_chars reads).
  return std::strtod(text.c_str(), nullptr);
}

} // namespace

extern "C" {

__attribute__((visibility("default"))) int64_t
_mlir_ciface_hasten_rt_format_float(double value, int32_t single, int32_t chunk) {
  return chunkOf(formatFloat(value, single != 0), chunk);
}

/// kind 0: signed, 1: unsigned, 2: bool ("True"/"False", as numpy).
__attribute__((visibility("default"))) int64_t
_mlir_ciface_hasten_rt_format_integer(int64_t value, int32_t kind, int32_t chunk) {
  std::string text = kind == 2   ? (value ? "True" : "False")
                     : kind == 1 ? std::to_string(static_cast<uint64_t>(value))
                                 : std::to_string(value);
  return chunkOf(text, chunk);
}

__attribute__((visibility("default"))) void _mlir_ciface_hasten_rt_parse_begin() {
  parseBuffer.clear();
}

__attribute__((visibility("default"))) void _mlir_ciface_hasten_rt_parse_byte(int32_t byte) {
  parseBuffer.push_back(static_cast<char>(byte));
}

__attribute__((visibility("default"))) double _mlir_ciface_hasten_rt_parse_end(int32_t single) {
  return parseNumber(parseBuffer, single != 0);
}

} // extern "C"
