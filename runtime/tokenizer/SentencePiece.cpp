//===- SentencePiece.cpp - the SentencePiece plugin ------------------------===//
//
// libhasten_sentencepiece.so: SentencePiece models (Llama 2, Mistral, T5's
// tokenizer.model) on Debian's libsentencepiece. A plugin so that the
// runtime itself does not depend on libsentencepiece and protobuf; the
// runtime loads it from its own folder when a .model file is opened.
//
//===----------------------------------------------------------------------===//

#include "Tokenizer.h"

#include <sentencepiece_processor.h>

namespace hasten::tokenizer {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
public:
  std::string kind() const override { return "SentencePiece"; }
  int64_t vocabSize() const override { return processor.GetPieceSize(); }
  bool decodesByToken() const override { return false; }
  int64_t tokenId(std::string_view token) const override {
    int id = processor.PieceToId(std::string(token));
    // PieceToId answers unk for unknown pieces; only unk itself is unk.
    return id == processor.unk_id() && processor.IdToPiece(id) != token ? -1 : id;
  }
  bool isSpecial(int64_t id) const override {
    return id >= 0 && id < vocabSize() &&
           (processor.IsControl(id) || processor.IsUnknown(id));
  }

  bool encode(std::string_view text, bool addSpecial, std::vector<int64_t> &ids,
              std::string &error) const override {
    std::vector<int> pieces;
    auto status = processor.Encode(std::string(text), &pieces);
    if (!status.ok()) {
      error = "SentencePiece: " + status.ToString();
      return false;
    }
    if (addSpecial && bosId >= 0)
      ids.push_back(bosId);
    ids.insert(ids.end(), pieces.begin(), pieces.end());
    return true;
  }

  bool decode(const int64_t *ids, size_t count, bool skipSpecial, std::string &text,
              std::string &error) const override {
    std::vector<int> pieces;
    pieces.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      if (ids[i] < 0 || ids[i] >= vocabSize()) {
        error = "token id " + std::to_string(ids[i]) + " is not in the vocabulary (" +
                std::to_string(vocabSize()) + " tokens)";
        return false;
      }
      // Decode drops control tokens itself; kept, they print as their piece.
      if (skipSpecial && isSpecial(ids[i]))
        continue;
      pieces.push_back(static_cast<int>(ids[i]));
    }
    std::string out;
    auto status = processor.Decode(pieces, &out);
    if (!status.ok()) {
      error = "SentencePiece: " + status.ToString();
      return false;
    }
    text += out;
    return true;
  }

  sentencepiece::SentencePieceProcessor processor;
};

} // namespace
} // namespace hasten::tokenizer

extern "C" __attribute__((visibility("default"))) hasten::tokenizer::Tokenizer *
hasten_sentencepiece_load(int abiVersion, const char *path, std::string *error) {
  using namespace hasten::tokenizer;
  if (abiVersion != kTokenizerAbiVersion) {
    *error = "libhasten_sentencepiece.so is from another hasten (tokenizer ABI " +
             std::to_string(kTokenizerAbiVersion) + ", the runtime's " +
             std::to_string(abiVersion) + ")";
    return nullptr;
  }
  auto tokenizer = std::make_unique<SentencePieceTokenizer>();
  auto status = tokenizer->processor.Load(path);
  if (!status.ok()) {
    *error = std::string(path) + ": not a SentencePiece model: " + status.ToString();
    return nullptr;
  }
  tokenizer->bosId = tokenizer->processor.bos_id();
  tokenizer->eosId = tokenizer->processor.eos_id();
  if (tokenizer->bosId >= 0)
    tokenizer->bosToken = tokenizer->processor.IdToPiece(tokenizer->bosId);
  if (tokenizer->eosId >= 0)
    tokenizer->eosToken = tokenizer->processor.IdToPiece(tokenizer->eosId);
  return tokenizer.release();
}
