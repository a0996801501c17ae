//===- Tokenizer.cpp - loading tokenizers, and their C API -----------------===//

#include "Tokenizer.h"

#include "../RuntimeInternal.h"
#include "ChatTemplate.h"
#include "Unicode.h"

#include <nlohmann/json.hpp>

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <tuple>

using namespace hasten::tokenizer;
using hasten::runtime::fail;
using hasten::runtime::failWith;

namespace {

constexpr size_t kMaxTokenizerFileBytes = size_t(1) << 30;

bool isDirectory(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool readFile(const std::string &path, std::string &out, std::string &error) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    error = path + ": " + std::strerror(errno);
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    error = path + ": not a regular file";
    return false;
  }
  if (static_cast<size_t>(st.st_size) > kMaxTokenizerFileBytes) {
    error = path + ": larger than 1 GiB; not a tokenizer";
    return false;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = path + ": cannot open: " + std::strerror(errno);
    return false;
  }
  std::ostringstream text;
  text << in.rdbuf();
  out = text.str();
  return true;
}

std::string folderOf(const std::string &path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

/// A special token in tokenizer_config.json: "<s>" or {"content": "<s>"}.
std::string tokenText(const nlohmann::json &node) {
  if (node.is_string())
    return node.get<std::string>();
  if (node.is_object() && node.contains("content") && node["content"].is_string())
    return node["content"].get<std::string>();
  return {};
}

/// Reads the BOS/EOS names and the chat template from tokenizer_config.json
/// beside the tokenizer, when there is one. `addBos` receives its
/// add_bos_token when it says.
bool applyConfig(Tokenizer &tokenizer, const std::string &folder, std::optional<bool> &addBos,
                 std::string &error) {
  std::string path = folder + "/tokenizer_config.json";
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return true;
  std::string text;
  if (!readFile(path, text, error))
    return false;
  try {
    nlohmann::json config = nlohmann::json::parse(text);
    if (!config.is_object()) {
      error = path + ": the top level is not an object";
      return false;
    }
    for (auto [key, slot, spelling] :
         {std::tuple{"bos_token", &tokenizer.bosId, &tokenizer.bosToken},
          std::tuple{"eos_token", &tokenizer.eosId, &tokenizer.eosToken}}) {
      if (!config.contains(key))
        continue;
      std::string name = tokenText(config[key]);
      if (name.empty())
        continue;
      int64_t id = tokenizer.tokenId(name);
      if (id < 0) {
        error = path + ": " + key + " '" + name + "' is not a token of the tokenizer";
        return false;
      }
      *slot = id;
      *spelling = name;
    }
    if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean())
      addBos = config["add_bos_token"].get<bool>();
    const nlohmann::json &chat = config.contains("chat_template") ? config["chat_template"]
                                                                   : nlohmann::json();
    if (chat.is_string())
      tokenizer.chatTemplate = chat.get<std::string>();
    else if (chat.is_array())
      for (const auto &entry : chat)
        if (entry.is_object() && entry.value("name", "") == "default")
          tokenizer.chatTemplate = entry.value("template", "");
  } catch (const nlohmann::json::exception &e) {
    error = path + ": not valid JSON: " + e.what();
    return false;
  }
  return true;
}

/// libhasten_sentencepiece.so from the folder this runtime was loaded from.
using SentencePieceLoad = Tokenizer *(*)(int, const char *, std::string *);
SentencePieceLoad sentencePiecePlugin(std::string &error) {
  static std::mutex mutex;
  static SentencePieceLoad load = nullptr;
  static std::string loadError;
  static bool tried = false;
  std::lock_guard<std::mutex> lock(mutex);
  if (!tried) {
    tried = true;
    Dl_info self;
    std::string folder = ".";
    if (dladdr(reinterpret_cast<void *>(&hasten_tokenizer_load), &self) && self.dli_fname)
      folder = folderOf(self.dli_fname);
    std::string path = folder + "/libhasten_sentencepiece.so";
    void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle)
      loadError = std::string("SentencePiece support is not available (") + dlerror() +
                  "); it needs libhasten_sentencepiece.so next to the runtime and "
                  "Debian's libsentencepiece0";
    else if (!(load = reinterpret_cast<SentencePieceLoad>(
                   dlsym(handle, "hasten_sentencepiece_load"))))
      loadError = path + ": not hasten's SentencePiece plugin";
  }
  error = loadError;
  return load;
}

/// The tokenizer API's two-call convention: `*count` receives the size of
/// the result; without a buffer the call only asks for it, with one the
/// result must fit.
template <typename T>
hasten_status deliver(const char *function, const T *result, size_t size, T *out,
                      size_t capacity, size_t *count, const char *unit) {
  *count = size;
  if (!out && capacity == 0)
    return HASTEN_OK;
  if (size > capacity)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "%s: the text is %zu %s, but there is room for %zu",
                function, size, unit, capacity);
  std::copy(result, result + size, out);
  return HASTEN_OK;
}

} // namespace

std::unique_ptr<Tokenizer> hasten::tokenizer::loadTokenizer(const std::string &given,
                                                            std::string &error) {
  std::string path = given;
  if (isDirectory(path)) {
    struct stat st;
    if (::stat((path + "/tokenizer.json").c_str(), &st) == 0)
      path += "/tokenizer.json";
    else if (::stat((path + "/tokenizer.model").c_str(), &st) == 0)
      path += "/tokenizer.model";
    else {
      error = given + ": the folder has neither tokenizer.json nor tokenizer.model";
      return nullptr;
    }
  }
  std::string text;
  if (!readFile(path, text, error))
    return nullptr;
  size_t first = text.find_first_not_of(" \t\r\n");
  std::unique_ptr<Tokenizer> tokenizer;
  std::optional<bool> addBos;
  if (first != std::string::npos && text[first] == '{') {
    tokenizer = loadByteLevelBpe(text, path, error);
  } else {
    SentencePieceLoad load = sentencePiecePlugin(error);
    if (!load) {
      error = path + ": " + error;
      return nullptr;
    }
    tokenizer.reset(load(kTokenizerAbiVersion, path.c_str(), &error));
  }
  if (!tokenizer || !applyConfig(*tokenizer, folderOf(path), addBos, error))
    return nullptr;
  if (addBos && !*addBos)
    tokenizer->bosId = -1;
  if (tokenizer->eosId < 0)
    for (const char *name : {"<|endoftext|>", "<|end_of_text|>", "</s>"})
      if ((tokenizer->eosId = tokenizer->tokenId(name)) >= 0) {
        tokenizer->eosToken = name;
        break;
      }
  return tokenizer;
}

//===----------------------------------------------------------------------===//
// C API
//===----------------------------------------------------------------------===//

struct hasten_tokenizer {
  std::unique_ptr<Tokenizer> impl;
  std::string kind;
};

struct hasten_text_stream {
  hasten_tokenizer *tokenizer;
  bool skipSpecial;
  std::string pending;         // decoded bytes not yet released (byte-level)
  std::vector<int64_t> tokens; // every token so far (SentencePiece)
  size_t released = 0;         // bytes of their text already released
  std::string out;
};

extern "C" {

hasten_status hasten_tokenizer_load(const char *path, hasten_tokenizer **out) {
  if (!path || !out)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_tokenizer_load: null argument");
  *out = nullptr;
  struct stat st;
  if (::stat(path, &st) != 0)
    return fail(HASTEN_ERROR_NOT_FOUND, "%s: %s", path, std::strerror(errno));
  std::string error;
  std::unique_ptr<Tokenizer> impl = loadTokenizer(path, error);
  if (!impl)
    return failWith(HASTEN_ERROR_INVALID_ARGUMENT, error);
  auto *tokenizer = new hasten_tokenizer{std::move(impl), {}};
  tokenizer->kind = tokenizer->impl->kind();
  *out = tokenizer;
  return HASTEN_OK;
}

void hasten_tokenizer_free(hasten_tokenizer *tokenizer) { delete tokenizer; }

const char *hasten_tokenizer_kind(const hasten_tokenizer *tokenizer) {
  return tokenizer ? tokenizer->kind.c_str() : nullptr;
}
int64_t hasten_tokenizer_vocab_size(const hasten_tokenizer *tokenizer) {
  return tokenizer ? tokenizer->impl->vocabSize() : -1;
}
int64_t hasten_tokenizer_token_id(const hasten_tokenizer *tokenizer, const char *token) {
  return tokenizer && token ? tokenizer->impl->tokenId(token) : -1;
}
int64_t hasten_tokenizer_bos_id(const hasten_tokenizer *tokenizer) {
  return tokenizer ? tokenizer->impl->bosId : -1;
}
int64_t hasten_tokenizer_eos_id(const hasten_tokenizer *tokenizer) {
  return tokenizer ? tokenizer->impl->eosId : -1;
}
const char *hasten_tokenizer_chat_template(const hasten_tokenizer *tokenizer) {
  return tokenizer ? tokenizer->impl->chatTemplate.c_str() : nullptr;
}

hasten_status hasten_tokenizer_apply_chat_template(const hasten_tokenizer *tokenizer,
                                                   const char *const *roles,
                                                   const char *const *contents, size_t count,
                                                   int add_generation_prompt, char *text,
                                                   size_t capacity, size_t *length) {
  if (!tokenizer || (count && (!roles || !contents)) || !length || (!text && capacity))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "hasten_tokenizer_apply_chat_template: null argument");
  const Tokenizer &impl = *tokenizer->impl;
  if (impl.chatTemplate.empty())
    return fail(HASTEN_ERROR_NOT_FOUND,
                "the tokenizer has no chat template (tokenizer_config.json's chat_template)");
  ChatTemplateInputs inputs;
  for (size_t i = 0; i < count; ++i) {
    if (!roles[i] || !contents[i])
      return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                  "hasten_tokenizer_apply_chat_template: message %zu has a null role or "
                  "content", i);
    inputs.messages.push_back({roles[i], contents[i]});
  }
  inputs.addGenerationPrompt = add_generation_prompt != 0;
  inputs.bosToken = impl.bosToken;
  inputs.eosToken = impl.eosToken;
  std::string out, error;
  if (!renderChatTemplate(impl.chatTemplate, inputs, out, error))
    return failWith(HASTEN_ERROR_INVALID_ARGUMENT, error);
  return deliver("hasten_tokenizer_apply_chat_template", out.data(), out.size(), text, capacity,
                 length, "bytes");
}

hasten_status hasten_tokenizer_encode(const hasten_tokenizer *tokenizer, const char *text,
                                      size_t length, int add_special_tokens, int64_t *ids,
                                      size_t capacity, size_t *count) {
  if (!tokenizer || (!text && length) || !count || (!ids && capacity))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_tokenizer_encode: null argument");
  std::vector<int64_t> out;
  std::string error;
  if (!tokenizer->impl->encode(std::string_view(text ? text : "", length),
                               add_special_tokens != 0, out, error))
    return failWith(HASTEN_ERROR_INVALID_ARGUMENT, error);
  return deliver("hasten_tokenizer_encode", out.data(), out.size(), ids, capacity, count,
                 "tokens");
}

hasten_status hasten_tokenizer_decode(const hasten_tokenizer *tokenizer, const int64_t *ids,
                                      size_t count, int skip_special_tokens, char *text,
                                      size_t capacity, size_t *length) {
  if (!tokenizer || (!ids && count) || !length || (!text && capacity))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_tokenizer_decode: null argument");
  std::string out, error;
  if (!tokenizer->impl->decode(ids, count, skip_special_tokens != 0, out, error))
    return failWith(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_tokenizer_decode: " + error);
  return deliver("hasten_tokenizer_decode", out.data(), out.size(), text, capacity, length,
                 "bytes");
}

hasten_status hasten_text_stream_create(hasten_tokenizer *tokenizer, int skip_special_tokens,
                                        hasten_text_stream **out) {
  if (!tokenizer || !out)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_text_stream_create: null argument");
  *out = new hasten_text_stream{tokenizer, skip_special_tokens != 0, {}, {}, 0, {}};
  return HASTEN_OK;
}

void hasten_text_stream_free(hasten_text_stream *stream) { delete stream; }

hasten_status hasten_text_stream_push(hasten_text_stream *stream, int64_t token,
                                      const char **text, size_t *length) {
  if (!stream || !text || !length)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_text_stream_push: null argument");
  const Tokenizer &impl = *stream->tokenizer->impl;
  std::string error;
  stream->out.clear();
  if (impl.decodesByToken()) {
    if (!impl.decode(&token, 1, stream->skipSpecial, stream->pending, error))
      return failWith(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_text_stream_push: " + error);
    size_t ready = completeUtf8Prefix(stream->pending);
    stream->out.assign(stream->pending, 0, ready);
    stream->pending.erase(0, ready);
  } else {
    // A token's text depends on those before it: decode them all and
    // release what is new, holding back a replacement character that the
    // next token's bytes may still complete.
    std::string all;
    stream->tokens.push_back(token);
    if (!impl.decode(stream->tokens.data(), stream->tokens.size(), stream->skipSpecial, all,
                     error)) {
      stream->tokens.pop_back();
      return failWith(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_text_stream_push: " + error);
    }
    size_t ready = completeUtf8Prefix(all);
    static const std::string kReplacement = "\xEF\xBF\xBD";
    while (ready >= stream->released + 3 && all.compare(ready - 3, 3, kReplacement) == 0)
      ready -= 3;
    if (ready > stream->released) {
      stream->out.assign(all, stream->released, ready - stream->released);
      stream->released = ready;
    }
  }
  *text = stream->out.data();
  *length = stream->out.size();
  return HASTEN_OK;
}

hasten_status hasten_text_stream_finish(hasten_text_stream *stream, const char **text,
                                        size_t *length) {
  if (!stream || !text || !length)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_text_stream_finish: null argument");
  const Tokenizer &impl = *stream->tokenizer->impl;
  std::string rest;
  if (impl.decodesByToken()) {
    rest.swap(stream->pending);
  } else {
    std::string all, error;
    if (!impl.decode(stream->tokens.data(), stream->tokens.size(), stream->skipSpecial, all,
                     error))
      return failWith(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_text_stream_finish: " + error);
    rest = all.substr(std::min(stream->released, all.size()));
  }
  // An incomplete character at the very end becomes U+FFFD, as a lossy
  // UTF-8 decoder would show it.
  stream->out.clear();
  for (const CodePoint &cp : decodeUtf8(rest))
    if (cp.value == 0xFFFD && cp.length == 1)
      appendUtf8(stream->out, 0xFFFD);
    else
      stream->out.append(rest, cp.offset, cp.length);
  stream->tokens.clear();
  stream->released = 0;
  *text = stream->out.data();
  *length = stream->out.size();
  return HASTEN_OK;
}

} // extern "C"
