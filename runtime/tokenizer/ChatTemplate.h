//===- ChatTemplate.h - rendering a tokenizer_config.json chat template ----===//
//
// Chat models ship a Jinja template that turns a conversation into the text
// they were trained on. This is the subset of Jinja those templates use,
// with the settings Hugging Face renders them with (trim_blocks,
// lstrip_blocks, loop controls): text, {{ }}, {% if/elif/else %}, {% for %}
// with `loop`, {% set %}, {% break/continue %}, comments and whitespace
// control; expressions with literals, lists, dicts, subscripts and slices,
// attributes, + - * / // % ~, comparisons, in, and/or/not, inline if, tests
// (defined, none, string, ...), filters (trim, length, upper, lower, ...),
// string methods (strip, startswith, ...) and raise_exception. Anything
// else (macros, includes, unknown filters) is an error that names it, never
// silently different text.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_RUNTIME_TOKENIZER_CHATTEMPLATE_H
#define HASTEN_RUNTIME_TOKENIZER_CHATTEMPLATE_H

#include <string>
#include <vector>

namespace hasten::tokenizer {

struct ChatMessage {
  std::string role;
  std::string content;
};

struct ChatTemplateInputs {
  std::vector<ChatMessage> messages;
  bool addGenerationPrompt = true;
  std::string bosToken, eosToken;
};

/// Renders `source` for `inputs` into `out`; false with `error` (naming the
/// construct and its offset in the template, or raise_exception's message).
bool renderChatTemplate(const std::string &source, const ChatTemplateInputs &inputs,
                        std::string &out, std::string &error);

} // namespace hasten::tokenizer

#endif // HASTEN_RUNTIME_TOKENIZER_CHATTEMPLATE_H
