//===- PreTokenizer.h - the regex splits of byte-level BPE tokenizers ------===//
//
// Byte-level BPE tokenizers split text into words with a regular expression
// before merging. The families in use write one of a few expressions; each
// is implemented here as a scanner over code points with the expression's
// exact alternation and backtracking behaviour, rather than a general regex
// engine (std::regex has no \p{L}). An expression outside this list is
// refused by name when the tokenizer loads.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_RUNTIME_TOKENIZER_PRETOKENIZER_H
#define HASTEN_RUNTIME_TOKENIZER_PRETOKENIZER_H

#include <optional>
#include <string_view>
#include <vector>

namespace hasten::tokenizer {

enum class SplitPattern {
  /// GPT-2, RoBERTa, GPT-J, Falcon, Phi-2 (ByteLevel's own expression).
  Gpt2,
  /// Llama 3 and cl100k-style: case-insensitive contractions, a letter run
  /// with one leading non-letter, digits in groups of up to three.
  Llama3,
  /// Qwen2: as Llama 3 with single digits.
  Qwen2,
};

/// The split a regular expression from tokenizer.json denotes, if known.
std::optional<SplitPattern> recognizeSplitPattern(std::string_view regex);
/// The expression of `pattern`, as tokenizer.json writes it.
std::string_view splitPatternRegex(SplitPattern pattern);

/// `text` cut into consecutive pieces (each a [begin, end) byte range; they
/// cover the whole text in order).
std::vector<std::pair<size_t, size_t>> splitWords(std::string_view text, SplitPattern pattern);

} // namespace hasten::tokenizer

#endif // HASTEN_RUNTIME_TOKENIZER_PRETOKENIZER_H
