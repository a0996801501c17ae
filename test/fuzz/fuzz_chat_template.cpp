//===- fuzz_chat_template.cpp - libFuzzer target: chat templates ------------===//
//
// Any bytes as a chat template (tokenizer_config.json is input): rendering
// either succeeds or fails with a message, within the renderer's bounds on
// nesting, work and output, for a fixed three-message conversation.
//
//===----------------------------------------------------------------------===//

#include "tokenizer/ChatTemplate.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  hasten::tokenizer::ChatTemplateInputs inputs;
  inputs.messages = {{"system", "Be brief."}, {"user", "Hello \xC3\xA9t\xC3\xA9"},
                     {"assistant", "  Hi!  "}};
  inputs.bosToken = "<s>";
  inputs.eosToken = "</s>";
  std::string source(reinterpret_cast<const char *>(data), size), out, error;
  if (!hasten::tokenizer::renderChatTemplate(source, inputs, out, error) && error.empty()) {
    std::fprintf(stderr, "refused without a message\n");
    std::abort();
  }
  if (out.size() > (size_t(64) << 20) + (size_t(1) << 20)) {
    std::fprintf(stderr, "output of %zu bytes passed the bound\n", out.size());
    std::abort();
  }
  return 0;
}
