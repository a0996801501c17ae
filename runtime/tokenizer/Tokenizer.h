//===- Tokenizer.h - the runtime's tokenizers, behind the C API ------------===//
//
// Text to token ids and back, for the tokenizers models ship with: Hugging
// Face's tokenizer.json (byte-level BPE: GPT-2, Llama 3, Qwen2) in the
// runtime itself, and SentencePiece models (Llama 2, Mistral, T5) through
// the libhasten_sentencepiece.so plugin, which the runtime loads only when
// such a model is opened (so deployments that never use one do not depend
// on libsentencepiece). The plugin implements this interface; both sides
// are built together and check kTokenizerAbiVersion.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_RUNTIME_TOKENIZER_TOKENIZER_H
#define HASTEN_RUNTIME_TOKENIZER_TOKENIZER_H

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace hasten::tokenizer {

constexpr int kTokenizerAbiVersion = 1;

class Tokenizer {
public:
  virtual ~Tokenizer() = default;
  /// "byte-level BPE", "SentencePiece BPE", ...
  virtual std::string kind() const = 0;
  /// One past the largest token id.
  virtual int64_t vocabSize() const = 0;
  /// Appends the ids of `text` to `ids`; with `addSpecial`, the tokens the
  /// model's template puts around a text (a BOS). False with `error` set
  /// when the text cannot be encoded faithfully.
  virtual bool encode(std::string_view text, bool addSpecial, std::vector<int64_t> &ids,
                      std::string &error) const = 0;
  /// Appends the bytes `ids` stand for to `text` (possibly ending inside a
  /// UTF-8 sequence that a later token completes). Control and special
  /// tokens are left out with `skipSpecial`.
  virtual bool decode(const int64_t *ids, size_t count, bool skipSpecial, std::string &text,
                      std::string &error) const = 0;
  /// Whether decoding concatenates each token's bytes (byte-level BPE), so
  /// that a stream may decode token by token; otherwise a token's text
  /// depends on the ones before it (SentencePiece's leading space).
  virtual bool decodesByToken() const = 0;
  /// The id of the token spelled `token`, or -1.
  virtual int64_t tokenId(std::string_view token) const = 0;
  virtual bool isSpecial(int64_t id) const = 0;

  int64_t bosId = -1;
  int64_t eosId = -1;
  /// The chat template of tokenizer_config.json ("" when none), and the
  /// BOS/EOS spellings it is rendered with.
  std::string chatTemplate;
  std::string bosToken, eosToken;
};

/// Loads tokenizer.json, a SentencePiece model, or a folder holding one
/// (tokenizer.json first); a tokenizer_config.json next to it supplies the
/// BOS/EOS tokens and the chat template. Null with `error` naming the file.
std::unique_ptr<Tokenizer> loadTokenizer(const std::string &path, std::string &error);

/// Byte-level BPE from a parsed tokenizer.json's text.
std::unique_ptr<Tokenizer> loadByteLevelBpe(const std::string &json, const std::string &path,
                                            std::string &error);

} // namespace hasten::tokenizer

/// The plugin's entry point: a SentencePiece tokenizer for `path`, or null
/// with `error` set.
extern "C" hasten::tokenizer::Tokenizer *
hasten_sentencepiece_load(int abiVersion, const char *path, std::string *error);

#endif // HASTEN_RUNTIME_TOKENIZER_TOKENIZER_H
