//===- ByteLevelBpe.cpp - byte-level BPE from Hugging Face's tokenizer.json -===//
//
// What GPT-2, Llama 3 and Qwen2 ship: added tokens cut out first, an
// optional NFC normalizer, a regex split (PreTokenizer.h), every byte of a
// word spelled in GPT-2's printable alphabet, BPE merges by rank, and a
// template that may put a BOS in front. Anything else a tokenizer.json can
// say (other models, normalizers, pre-tokenizers, decoders) is refused by
// name rather than approximated, so that a model is never fed ids its own
// tokenizer would not produce.
//
//===----------------------------------------------------------------------===//

#include "PreTokenizer.h"
#include "Tokenizer.h"
#include "Unicode.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdio>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace hasten::tokenizer {
namespace {

using json = nlohmann::json;

/// A token from "added_tokens": matched in the raw text before anything else.
struct AddedToken {
  int64_t id;
  std::string content;
  bool special, lstrip, rstrip, singleWord;
};

class ByteLevelBpe final : public Tokenizer {
public:
  std::string kind() const override { return "byte-level BPE"; }
  int64_t vocabSize() const override { return static_cast<int64_t>(idToToken.size()); }
  bool decodesByToken() const override { return true; }
  int64_t tokenId(std::string_view token) const override {
    for (const AddedToken &t : added)
      if (t.content == token)
        return t.id;
    auto it = vocab.find(std::string(token));
    return it == vocab.end() ? -1 : it->second;
  }
  bool isSpecial(int64_t id) const override {
    return std::any_of(added.begin(), added.end(),
                       [&](const AddedToken &t) { return t.id == id && t.special; });
  }

  bool encode(std::string_view text, bool addSpecial, std::vector<int64_t> &ids,
              std::string &error) const override {
    if (addSpecial)
      ids.insert(ids.end(), prefix.begin(), prefix.end());
    size_t start = 0;
    while (start <= text.size()) {
      size_t matchBegin, matchEnd;
      const AddedToken *token = findAdded(text, start, matchBegin, matchEnd);
      size_t plainEnd = token ? matchBegin : text.size();
      if (!encodePlain(text.substr(start, plainEnd - start), ids, error))
        return false;
      if (!token)
        break;
      ids.push_back(token->id);
      start = matchEnd;
    }
    if (addSpecial)
      ids.insert(ids.end(), suffix.begin(), suffix.end());
    return true;
  }

  bool decode(const int64_t *ids, size_t count, bool skipSpecial, std::string &text,
              std::string &error) const override {
    for (size_t i = 0; i < count; ++i) {
      int64_t id = ids[i];
      if (id < 0 || id >= vocabSize() || idToToken[id].empty()) {
        error = "token id " + std::to_string(id) + " is not in the vocabulary (" +
                std::to_string(vocabSize()) + " tokens)";
        return false;
      }
      if (const AddedToken *t = addedById(id)) {
        if (!(skipSpecial && t->special))
          text += t->content;
        continue;
      }
      for (const CodePoint &cp : decodeUtf8(idToToken[id])) {
        int byte = charToByte(cp.value);
        if (byte >= 0)
          text += static_cast<char>(byte);
        else
          appendUtf8(text, cp.value);
      }
    }
    return true;
  }

  bool load(const json &root, const std::string &path, std::string &error);

private:
  const AddedToken *addedById(int64_t id) const {
    auto it = addedIndex.find(id);
    return it == addedIndex.end() ? nullptr : &added[it->second];
  }

  /// The leftmost (then longest) added token in text[from...], with the
  /// whitespace its lstrip/rstrip flags absorb.
  const AddedToken *findAdded(std::string_view text, size_t from, size_t &begin,
                              size_t &end) const {
    const AddedToken *best = nullptr;
    size_t bestPos = std::string_view::npos;
    for (const AddedToken &t : added) {
      if (t.content.empty())
        continue;
      for (size_t pos = text.find(t.content, from); pos != std::string_view::npos;
           pos = text.find(t.content, pos + 1)) {
        if (t.singleWord && !standsAlone(text, pos, t.content.size()))
          continue;
        if (pos < bestPos || (pos == bestPos && t.content.size() > best->content.size())) {
          best = &t;
          bestPos = pos;
        }
        break;
      }
    }
    if (!best)
      return nullptr;
    begin = bestPos;
    end = bestPos + best->content.size();
    if (best->lstrip)
      while (begin > from && isAsciiSpace(text[begin - 1]))
        --begin;
    if (best->rstrip)
      while (end < text.size() && isAsciiSpace(text[end]))
        ++end;
    return best;
  }
  static bool isAsciiSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
  static bool isWordByte(char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x80 || std::isalnum(u) || c == '_';
  }
  static bool standsAlone(std::string_view text, size_t pos, size_t length) {
    return (pos == 0 || !isWordByte(text[pos - 1])) &&
           (pos + length == text.size() || !isWordByte(text[pos + length]));
  }

  bool encodePlain(std::string_view text, std::vector<int64_t> &ids, std::string &error) const {
    if (text.empty())
      return true;
    if (nfc) {
      for (const CodePoint &cp : decodeUtf8(text))
        if (mayChangeUnderNfc(cp.value)) {
          char hex[16];
          std::snprintf(hex, sizeof hex, "U+%04X", cp.value);
          error = "the text needs Unicode NFC normalization at " + std::string(hex) +
                  " (byte " + std::to_string(cp.offset) +
                  "), which this tokenizer's normalizer asks for and hasten does not "
                  "implement; normalize the text to NFC first";
          return false;
        }
    }
    std::string withPrefix;
    if (addPrefixSpace && text.front() != ' ') {
      withPrefix = " " + std::string(text);
      text = withPrefix;
    }
    if (!split) {
      encodeWord(text, ids);
      return true;
    }
    for (auto [begin, end] : splitWords(text, *split))
      encodeWord(text.substr(begin, end - begin), ids);
    return true;
  }

  /// One word: its bytes in the printable alphabet, merged by rank.
  void encodeWord(std::string_view word, std::vector<int64_t> &ids) const {
    {
      std::lock_guard<std::mutex> lock(cacheMutex);
      auto it = cache.find(std::string(word));
      if (it != cache.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<std::string> symbols;
    std::string whole;
    for (unsigned char byte : word) {
      std::string symbol;
      appendUtf8(symbol, byteToChar(byte));
      whole += symbol;
      symbols.push_back(std::move(symbol));
    }
    std::vector<int64_t> out;
    auto known = vocab.find(whole);
    if (ignoreMerges && known != vocab.end()) {
      out.push_back(known->second);
    } else {
      mergeByRank(symbols);
      for (const std::string &s : symbols) {
        auto it = vocab.find(s);
        // Every single byte is in a byte-level vocabulary (checked at load),
        // so a merge result is the only thing that can be missing.
        if (it != vocab.end()) {
          out.push_back(it->second);
          continue;
        }
        for (const CodePoint &cp : decodeUtf8(s)) {
          std::string one;
          appendUtf8(one, cp.value);
          out.push_back(vocab.at(one));
        }
      }
    }
    ids.insert(ids.end(), out.begin(), out.end());
    std::lock_guard<std::mutex> lock(cacheMutex);
    if (cache.size() > 65536)
      cache.clear();
    cache.emplace(std::string(word), std::move(out));
  }

  void mergeByRank(std::vector<std::string> &symbols) const {
    std::string key;
    while (symbols.size() > 1) {
      int bestRank = INT_MAX;
      size_t bestAt = 0;
      for (size_t i = 0; i + 1 < symbols.size(); ++i) {
        key.assign(symbols[i]).push_back('\0');
        key += symbols[i + 1];
        auto it = ranks.find(key);
        if (it != ranks.end() && it->second < bestRank) {
          bestRank = it->second;
          bestAt = i;
        }
      }
      if (bestRank == INT_MAX)
        return;
      symbols[bestAt] += symbols[bestAt + 1];
      symbols.erase(symbols.begin() + bestAt + 1);
    }
  }

  std::unordered_map<std::string, int64_t> vocab;
  std::vector<std::string> idToToken;
  std::unordered_map<std::string, int> ranks; // "a\0b" -> rank
  std::vector<AddedToken> added;
  std::unordered_map<int64_t, size_t> addedIndex;
  std::optional<SplitPattern> split;
  bool addPrefixSpace = false;
  bool ignoreMerges = false;
  bool nfc = false;
  std::vector<int64_t> prefix, suffix;
  mutable std::mutex cacheMutex;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache;
};

std::string typeOf(const json &node) {
  return node.is_object() && node.contains("type") && node["type"].is_string()
             ? node["type"].get<std::string>()
             : std::string();
}

bool ByteLevelBpe::load(const json &root, const std::string &path, std::string &error) {
  auto refuse = [&](const std::string &what) {
    error = path + ": " + what;
    return false;
  };
  const json &model = root.at("model");
  if (typeOf(model) != "BPE")
    return refuse("the model is '" + typeOf(model) +
                  "', not BPE; hasten reads byte-level BPE tokenizer.json files (GPT-2, Llama 3, "
                  "Qwen2) and SentencePiece .model files");
  for (const char *key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty())
      return refuse(std::string("BPE with a ") + key + " is not supported");
  if (model.contains("dropout") && model["dropout"].is_number() &&
      model["dropout"].get<double>() > 0)
    return refuse("BPE dropout is for training; remove it from the file");
  ignoreMerges = model.value("ignore_merges", false);

  // Vocabulary.
  for (const auto &[token, id] : model.at("vocab").items()) {
    int64_t value = id.get<int64_t>();
    if (value < 0 || value >= (1 << 24))
      return refuse("token '" + token + "' has id " + std::to_string(value) +
                    ", outside [0, 16777216)");
    vocab.emplace(token, value);
    if (value >= static_cast<int64_t>(idToToken.size()))
      idToToken.resize(value + 1);
    idToToken[value] = token;
  }
  for (int b = 0; b < 256; ++b) {
    std::string symbol;
    appendUtf8(symbol, byteToChar(static_cast<uint8_t>(b)));
    if (!vocab.count(symbol))
      return refuse("the vocabulary lacks the byte-level token for byte " + std::to_string(b) +
                    "; it is not a byte-level BPE vocabulary");
  }
  // Merges: "a b" strings (GPT-2's files) or ["a", "b"] pairs (newer ones).
  int rank = 0;
  for (const json &merge : model.at("merges")) {
    std::string a, b;
    if (merge.is_string()) {
      std::string text = merge.get<std::string>();
      size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos)
        return refuse("merge " + std::to_string(rank) + " ('" + text + "') is not 'a b'");
      a = text.substr(0, space);
      b = text.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2) {
      a = merge[0].get<std::string>();
      b = merge[1].get<std::string>();
    } else {
      return refuse("merge " + std::to_string(rank) + " is neither 'a b' nor [a, b]");
    }
    ranks.emplace(a + '\0' + b, rank++);
  }

  // Added tokens.
  if (root.contains("added_tokens") && root["added_tokens"].is_array())
    for (const json &t : root["added_tokens"]) {
      AddedToken token{t.at("id").get<int64_t>(), t.at("content").get<std::string>(),
                       t.value("special", false), t.value("lstrip", false),
                       t.value("rstrip", false), t.value("single_word", false)};
      if (token.id < 0 || token.id >= (1 << 24))
        return refuse("added token '" + token.content + "' has id " + std::to_string(token.id));
      if (token.id >= static_cast<int64_t>(idToToken.size()))
        idToToken.resize(token.id + 1);
      idToToken[token.id] = token.content;
      addedIndex[token.id] = added.size();
      added.push_back(std::move(token));
    }

  // Normalizer: none, or NFC (checked per text, see encodePlain).
  if (root.contains("normalizer") && !root["normalizer"].is_null()) {
    std::string type = typeOf(root["normalizer"]);
    if (type != "NFC")
      return refuse("the normalizer '" + type + "' is not supported (none or NFC are)");
    nfc = true;
  }

  // Pre-tokenizer: ByteLevel (its own expression), or a Split followed by a
  // ByteLevel that does not split again.
  const json &pre = root.at("pre_tokenizer");
  std::vector<json> steps;
  if (typeOf(pre) == "Sequence")
    steps.assign(pre.at("pretokenizers").begin(), pre.at("pretokenizers").end());
  else
    steps.push_back(pre);
  bool byteLevel = false;
  for (const json &step : steps) {
    std::string type = typeOf(step);
    if (type == "ByteLevel") {
      byteLevel = true;
      addPrefixSpace = step.value("add_prefix_space", false);
      if (step.value("use_regex", true)) {
        if (split)
          return refuse("two regex splits in the pre-tokenizer are not supported");
        split = SplitPattern::Gpt2;
      }
    } else if (type == "Split") {
      const json &pattern = step.at("pattern");
      std::string regex = pattern.contains("Regex") ? pattern["Regex"].get<std::string>()
                                                     : std::string();
      if (step.value("invert", false) || step.value("behavior", std::string()) != "Isolated")
        return refuse("only Split with behavior 'Isolated' and no invert is supported");
      auto known = recognizeSplitPattern(regex);
      if (!known)
        return refuse("the pre-tokenizer's regular expression is not one hasten implements "
                      "(GPT-2's, Llama 3's, Qwen2's): " + regex);
      if (split)
        return refuse("two regex splits in the pre-tokenizer are not supported");
      split = known;
    } else {
      return refuse("the pre-tokenizer '" + type + "' is not supported");
    }
  }
  if (!byteLevel)
    return refuse("the pre-tokenizer has no ByteLevel step; only byte-level BPE is supported");
  if (typeOf(root.at("decoder")) != "ByteLevel")
    return refuse("the decoder '" + typeOf(root["decoder"]) + "' is not ByteLevel");

  // Post-processor: ByteLevel (nothing to add), TemplateProcessing for the
  // special tokens around a single text, or a Sequence of them.
  if (root.contains("post_processor") && !root["post_processor"].is_null()) {
    const json &post = root["post_processor"];
    std::vector<json> posts;
    if (typeOf(post) == "Sequence")
      posts.assign(post.at("processors").begin(), post.at("processors").end());
    else
      posts.push_back(post);
    for (const json &p : posts) {
      std::string type = typeOf(p);
      if (type == "ByteLevel")
        continue;
      if (type != "TemplateProcessing")
        return refuse("the post-processor '" + type + "' is not supported");
      bool afterText = false;
      for (const json &piece : p.at("single")) {
        if (piece.contains("Sequence")) {
          afterText = true;
          continue;
        }
        std::string name = piece.at("SpecialToken").at("id").get<std::string>();
        const json &entry = p.at("special_tokens").at(name);
        for (const json &id : entry.at("ids"))
          (afterText ? suffix : prefix).push_back(id.get<int64_t>());
      }
    }
  }
  for (int64_t id : prefix)
    if (id < 0 || id >= vocabSize())
      return refuse("the template's token id " + std::to_string(id) + " is not in the vocabulary");
  for (int64_t id : suffix)
    if (id < 0 || id >= vocabSize())
      return refuse("the template's token id " + std::to_string(id) + " is not in the vocabulary");
  if (prefix.size() == 1) {
    bosId = prefix.front();
    bosToken = idToToken[bosId];
  }
  return true;
}

} // namespace

std::unique_ptr<Tokenizer> loadByteLevelBpe(const std::string &text, const std::string &path,
                                            std::string &error) {
  auto tokenizer = std::make_unique<ByteLevelBpe>();
  try {
    json root = json::parse(text);
    if (!root.is_object())
      error = path + ": not a tokenizer.json (the top level is not an object)";
    else if (tokenizer->load(root, path, error))
      return tokenizer;
  } catch (const json::exception &e) {
    // Parse errors and missing or mistyped fields.
    error = path + ": not a valid tokenizer.json: " + e.what();
  }
  return nullptr;
}

} // namespace hasten::tokenizer
