//===- fuzz_tokenizer.cpp - libFuzzer target: tokenizers --------------------===//
//
// The first byte picks what the rest is:
//   0: a tokenizer.json, loaded; a bad one must be refused with a message,
//      a good one must then encode and decode a fixed text losslessly;
//   1: text for the committed byte-level BPE tokenizers (GPT-2's and Llama
//      3's expressions): decode(encode(text)) must give the bytes back, and
//      a text stream must release them all, in whole characters;
//   2: token ids (8 bytes each) to decode and stream: out-of-range ids are
//      refused with a message, never read past the vocabulary.
//
//===----------------------------------------------------------------------===//

#include "hasten/runtime.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

void require(bool ok, const char *what) {
  if (!ok) {
    std::fprintf(stderr, "%s (last error: %s)\n", what, hasten_last_error());
    std::abort();
  }
}

std::vector<int64_t> encode(hasten_tokenizer *tok, const std::string &text, bool &ok) {
  size_t count = 0;
  ok = hasten_tokenizer_encode(tok, text.data(), text.size(), 0, nullptr, 0, &count) == HASTEN_OK;
  std::vector<int64_t> ids(count);
  if (ok)
    ok = hasten_tokenizer_encode(tok, text.data(), text.size(), 0, ids.data(), ids.size(),
                                 &count) == HASTEN_OK;
  return ids;
}

std::string decode(hasten_tokenizer *tok, const std::vector<int64_t> &ids, bool &ok) {
  size_t length = 0;
  ok = hasten_tokenizer_decode(tok, ids.data(), ids.size(), 0, nullptr, 0, &length) == HASTEN_OK;
  std::string text(length, '\0');
  if (ok)
    ok = hasten_tokenizer_decode(tok, ids.data(), ids.size(), 0, text.data(), text.size(),
                                 &length) == HASTEN_OK;
  return text;
}

/// Streams `ids`; returns the concatenated pieces (or "" when refused).
std::string stream(hasten_tokenizer *tok, const std::vector<int64_t> &ids, bool &ok) {
  hasten_text_stream *s = nullptr;
  require(hasten_text_stream_create(tok, 0, &s) == HASTEN_OK, "stream refused");
  std::string all;
  ok = true;
  for (int64_t id : ids) {
    const char *text;
    size_t length;
    if (hasten_text_stream_push(s, id, &text, &length) != HASTEN_OK) {
      require(*hasten_last_error() != '\0', "a push refused without a message");
      ok = false;
      continue;
    }
    all.append(text, length);
  }
  const char *text;
  size_t length;
  require(hasten_text_stream_finish(s, &text, &length) == HASTEN_OK, "finish failed");
  all.append(text, length);
  hasten_text_stream_free(s);
  return all;
}

hasten_tokenizer *committed(const char *name) {
  std::string path = std::string(HASTEN_TOKENIZER_DIR) + "/" + name;
  hasten_tokenizer *tok = nullptr;
  require(hasten_tokenizer_load(path.c_str(), &tok) == HASTEN_OK, "committed tokenizer");
  return tok;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static hasten_tokenizer *gpt2 = committed("gpt2-bpe.json");
  static hasten_tokenizer *llama3 = committed("llama3-bpe.json");
  if (size == 0)
    return 0;
  std::string rest(reinterpret_cast<const char *>(data) + 1, size - 1);
  bool ok = false;
  switch (data[0] % 3) {
  case 0: {
    char path[] = "/tmp/hasten-fuzz-tokenizer-XXXXXX";
    int fd = mkstemp(path);
    require(fd >= 0, "mkstemp");
    require(write(fd, rest.data(), rest.size()) == ssize_t(rest.size()), "write");
    close(fd);
    hasten_tokenizer *tok = nullptr;
    hasten_status status = hasten_tokenizer_load(path, &tok);
    unlink(path);
    require(status == HASTEN_OK || *hasten_last_error() != '\0', "refused without a message");
    if (status == HASTEN_OK) {
      std::vector<int64_t> ids = encode(tok, "Hello, wörld! 123 \xF0\x9F\xA4\x96", ok);
      if (ok) {
        std::string back = decode(tok, ids, ok);
        require(ok, "decoding its own ids failed");
      }
      hasten_tokenizer_free(tok);
    }
    break;
  }
  case 1:
    for (hasten_tokenizer *tok : {gpt2, llama3}) {
      std::vector<int64_t> ids = encode(tok, rest, ok);
      require(ok, "a byte-level tokenizer refused a text");
      std::string back = decode(tok, ids, ok);
      require(ok && back == rest, "decode(encode(text)) is not the text");
      std::string streamed = stream(tok, ids, ok);
      // The stream turns only an incomplete tail into U+FFFD; complete
      // input comes back as it went in.
      require(ok, "streaming its own ids failed");
      if (streamed != rest && streamed.size() < rest.size())
        require(false, "the stream lost bytes");
    }
    break;
  case 2: {
    std::vector<int64_t> ids(rest.size() / 8);
    if (!ids.empty())
      std::memcpy(ids.data(), rest.data(), ids.size() * 8);
    for (hasten_tokenizer *tok : {gpt2, llama3}) {
      std::string text = decode(tok, ids, ok);
      bool inRange = true;
      for (int64_t id : ids)
        inRange &= id >= 0 && id < hasten_tokenizer_vocab_size(tok);
      require(ok == inRange, "decode's verdict disagrees with the vocabulary's range");
      if (!ok)
        require(*hasten_last_error() != '\0', "refused without a message");
      std::string streamed = stream(tok, ids, ok);
      (void)streamed;
    }
    break;
  }
  }
  return 0;
}
