//===- hasten-run.cpp - run an entry point of a compiled module ------------===//
//
// hasten-run model.so --input x=x.npy [--entry NAME] [--output-dir DIR]
//            [--output-format=npy|pb] [--repeat N]
// hasten-run decoder.so --generate --prompt-ids 1,17,42 [--max-new-tokens N]
//            [--temperature T] [--top-k K] [--top-p P] [--seed S] [--print-ids]
//
// Uses only the runtime C API (and tensor file I/O).
//
//===----------------------------------------------------------------------===//

#include "hasten/CheckedSize.h"
#include "hasten/TensorIO.h"
#include "hasten/Support/Version.h"
#include "hasten/runtime.h"

#include "Manifest.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/CommandLine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace {

using namespace llvm;

int die(const std::string &message) {
  std::fprintf(stderr, "hasten-run: error: %s\n", message.c_str());
  return 1;
}

std::string describe(const hasten_module *m, const char *entry, int isOutput, size_t i) {
  int64_t dims[16];
  int rank = hasten_signature_dims(m, entry, isOutput, i, dims, 16);
  std::string s = std::string(hasten_signature_name(m, entry, isOutput, i)) + ": " +
                  hasten_dtype_name(hasten_signature_dtype(m, entry, isOutput, i)) + "[";
  for (int d = 0; d < rank; ++d) {
    s += d ? ", " : "";
    const char *name = hasten_signature_dim_name(m, entry, isOutput, i, d);
    s += dims[d] >= 0 ? std::to_string(dims[d]) : (*name ? name : "?");
  }
  return s + "]";
}

/// "[2x3]": a tensor's dimensions.
std::string dimsOf(hasten_tensor *t) {
  std::string shape;
  for (int d = 0; d < hasten_tensor_rank(t); ++d)
    shape += (d ? "x" : "") + std::to_string(hasten_tensor_dims(t)[d]);
  return "[" + shape + "]";
}

/// The ONNX value that starts at input or output `i`: a tensor, or a
/// sequence, an optional or strings made of the parts their roles mark.
hasten::ValueLayout valueLayout(const hasten_module *m, const char *entry, int isOutput,
                                size_t i) {
  size_t count = 0;
  hasten_entry_num_tensors(m, entry, isOutput, &count);
  auto roleAt = [&](size_t k) {
    hasten_tensor_role role = HASTEN_ROLE_NONE;
    if (k < count)
      hasten_signature_role(m, entry, isOutput, k, &role);
    return role;
  };
  hasten::ValueLayout layout;
  size_t main = i;
  if (roleAt(i) == HASTEN_ROLE_OPTIONAL_PRESENT) {
    layout.optional = true;
    ++main;
  }
  layout.sequence = roleAt(main) == HASTEN_ROLE_SEQUENCE_DATA &&
                    roleAt(main + 1) == HASTEN_ROLE_SEQUENCE_SHAPES;
  layout.strings = roleAt(main) == HASTEN_ROLE_STRING_BYTES &&
                   roleAt(main + 1) == HASTEN_ROLE_STRING_LENGTHS;
  layout.dtype = hasten_signature_dtype(m, entry, isOutput, main);
  int64_t dims[16];
  int rank = hasten_signature_dims(m, entry, isOutput, main, dims, 16);
  if (rank >= 0 && rank <= 16)
    layout.placeholderDims.assign(dims, dims + rank);
  return layout;
}

/// The most bytes a file for input `i` may have: the signature's size when
/// it is static (a .pb may spend up to 11 bytes per element on varints),
/// plus room for the header; 0 (no bound) when a dimension is dynamic.
uint64_t inputFileBound(const hasten_module *m, const char *entry, size_t i,
                        const std::string &path) {
  int64_t dims[16];
  int rank = hasten_signature_dims(m, entry, 0, i, dims, 16);
  if (rank < 0 || rank > 16 || std::any_of(dims, dims + rank, [](int64_t d) { return d < 0; }))
    return 0;
  std::optional<uint64_t> bytes = hasten::checkedByteSize(
      dims, size_t(rank), hasten_dtype_size(hasten_signature_dtype(m, entry, 0, i)));
  uint64_t perByte = StringRef(path).ends_with(".pb") ? 11 : 1;
  if (!bytes || *bytes > (hasten::kMaxTensorBytes >> 4))
    return 0;
  return *bytes * perByte + (1 << 20);
}

struct GenerateFlags {
  bool enabled = false;
  std::vector<int64_t> promptIds;
  std::string promptText;
  bool textPrompt = false, printIds = false, quiet = false;
  /// Pack the weights before timing (--cold leaves it to the first step).
  bool prepare = true;
  std::vector<int64_t> stopIds;
  hasten_generate_options options;
  /// Speculation: "draft" (the module's draft model, when it has one),
  /// "ngram" (prompt lookup) or "none".
  std::string drafter;
  hasten_speculation_options speculation;
  /// --tokenizer: text prompts are encoded and output decoded with it.
  hasten_tokenizer *tokenizer = nullptr;
  bool stopAtEos = true;
  /// --interactive: after the first answer, each line read from stdin
  /// continues the same sequence.
  bool interactive = false;
  /// Prompts are user messages rendered through the tokenizer's chat
  /// template (--chat, or --interactive with a template), after --system.
  bool chat = false;
  std::string system;
};

/// A chat so far, and the tokens its rendering encodes to.
struct Conversation {
  std::vector<std::string> roles, contents;
  void add(const char *role, std::string content) {
    roles.push_back(role);
    contents.push_back(std::move(content));
  }
};

/// --signature: what the module is and needs, then each entry (or only
/// `onlyEntry`) with its kind, KV cache and tensors.
int printSignatures(hasten_module *module, const std::string &path,
                    const std::string &onlyEntry) {
  static const char *const kinds[] = {"main",      "prefill",  "decode",        "verify",
                                      "spec_step", "generate", "sampler_stream"};
  static_assert(sizeof(kinds) / sizeof(kinds[0]) == HASTEN_ENTRY_SAMPLER_STREAM + 1,
                "a name for every entry kind");
  static const char *const roles[] = {
      "",       "token_ids",      "past_length",       "kv_cache",       "kv_block_pool",
      "kv_block_table", "logits", "draft_kv_cache", "draft_past_length", "accepted_tokens",
      "sampler_noise", "sampler_state", "sequence_data", "sequence_shapes", "optional_present",
      "string_bytes", "string_lengths", "temperature", "uniforms", "draft_kv_block_table"};
  static_assert(sizeof(roles) / sizeof(roles[0]) == HASTEN_ROLE_DRAFT_KV_BLOCK_TABLE + 1,
                "a name for every tensor role");
  std::vector<std::string> entries;
  for (size_t i = 0; i < hasten_module_num_entries(module); ++i)
    if (onlyEntry.empty() || onlyEntry == hasten_module_entry_name(module, i))
      entries.push_back(hasten_module_entry_name(module, i));
  if (entries.empty())
    return die("the module has no entry '" + onlyEntry + "'");
  std::printf("module %s (%s, %s)\n", path.c_str(), hasten_module_compiler_version(module),
              hasten_module_target(module));
  std::printf("  weights: %zu tensors, %.3f MB", hasten_module_num_weights(module),
              hasten_module_weight_bytes(module) / 1e6);
  // By the format their kernels read (what --weights chose), and the file
  // they are mapped from.
  std::map<std::string, uint64_t> byFormat;
  for (size_t i = 0; i < hasten_module_num_weights(module); ++i)
    byFormat[hasten_module_weight_format(module, i)] += hasten_module_weight_size(module, i);
  const char *separator = " (";
  for (const auto &[format, bytes] : byFormat) {
    std::printf("%s%s %.3f MB", separator, format.c_str(), bytes / 1e6);
    separator = ", ";
  }
  std::printf("%s", byFormat.empty() ? "" : ")");
  if (*hasten_module_weights_path(module))
    std::printf(", mapped from %s", hasten_module_weights_path(module));
  std::printf("\n");
  std::printf("  cpu: %s, requires: %s\n", hasten_module_cpu(module),
              *hasten_module_cpu_features(module) ? hasten_module_cpu_features(module)
                                                  : "(nothing beyond the base ISA)");
  std::printf("  runtime kernels: %s\n", hasten_runtime_kernel_isa());
  for (const std::string &name : entries) {
    const char *entry = name.c_str();
    size_t numInputs = 0, numOutputs = 0;
    if (hasten_entry_num_tensors(module, entry, 0, &numInputs) != HASTEN_OK ||
        hasten_entry_num_tensors(module, entry, 1, &numOutputs) != HASTEN_OK)
      return die(hasten_last_error());
    hasten_entry_kind kind = HASTEN_ENTRY_MAIN;
    const char *model = "";
    hasten_entry_info(module, entry, &kind, &model);
    std::printf("entry %s\n  kind: %s%s%s, device: %s\n", entry, kinds[kind],
                *model ? ", model " : "", model, hasten_module_device(module));
    hasten_kv_cache_info kv{};
    kv.struct_size = sizeof(kv);
    int64_t onDevice = hasten_module_kv_device_tokens(module);
    std::string spill = onDevice >= 0 ? ", " + std::to_string(onDevice) +
                                            " tokens of each pool in device memory, the rest "
                                            "in host memory"
                                      : "";
    if (kind != HASTEN_ENTRY_MAIN && hasten_module_kv_cache(module, model, &kv) == HASTEN_OK)
      std::printf("  kv cache: %s, %s, %lld layers x %lld kv heads x %lld dims, capacity %lld"
                  "%s%s%s\n",
                  kv.paged ? "paged" : "contiguous", hasten_dtype_name(kv.dtype),
                  (long long)kv.layers, (long long)kv.kv_heads, (long long)kv.head_dim,
                  (long long)kv.capacity,
                  kv.position_limit > 0
                      ? (" (the model knows " + std::to_string(kv.position_limit) + " positions)")
                            .c_str()
                      : "",
                  kv.paged ? (", blocks of " + std::to_string(kv.block_size)).c_str() : "",
                  kv.paged ? spill.c_str() : "");
    if (std::strcmp(hasten_module_device(module), "cuda") == 0)
      std::printf("  host waits: %s\n",
                  hasten_entry_cuda_graph_capturable(module, entry) == 1
                      ? "once per call (a CUDA graph can capture it)"
                      : "inside calls (its host code reads device memory; no CUDA graph)");
    if (int64_t calls = hasten_entry_sampler_steps(module, entry))
      std::printf("  sampler: %lld denoiser call%s per run\n", (long long)calls,
                  calls == 1 ? "" : "s");
    auto roleOf = [&](int isOutput, size_t i) {
      hasten_tensor_role role = HASTEN_ROLE_NONE;
      hasten_signature_role(module, entry, isOutput, i, &role);
      return role == HASTEN_ROLE_NONE ? std::string() : std::string("  (") + roles[role] + ")";
    };
    for (size_t i = 0; i < numInputs; ++i)
      std::printf("  input  %s%s\n", describe(module, entry, 0, i).c_str(), roleOf(0, i).c_str());
    for (size_t i = 0; i < numOutputs; ++i)
      std::printf("  output %s%s\n", describe(module, entry, 1, i).c_str(), roleOf(1, i).c_str());
  }
  return 0;
}

/// The prompt of --prompt-file: a regular file of at most 64 MiB, or stdin.
bool readPromptFile(const std::string &path, std::string &text, std::string &error) {
  constexpr size_t kMaxPromptBytes = size_t(64) << 20;
  FILE *file = stdin;
  if (path != "-") {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      error = "--prompt-file: " + path + ": " + std::strerror(errno);
      return false;
    }
    if (!S_ISREG(st.st_mode)) {
      error = "--prompt-file: " + path + ": not a regular file";
      return false;
    }
    file = std::fopen(path.c_str(), "rb");
    if (!file) {
      error = "--prompt-file: " + path + ": " + std::strerror(errno);
      return false;
    }
  }
  char buffer[65536];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) {
    text.append(buffer, n);
    if (text.size() > kMaxPromptBytes) {
      error = "--prompt-file: " + path + ": longer than 64 MiB";
      break;
    }
  }
  if (file != stdin)
    std::fclose(file);
  return error.empty();
}

bool parseIds(const char *text, std::vector<int64_t> &ids) {
  ids.clear();
  std::string s = text;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    std::string item = s.substr(start, comma == std::string::npos ? std::string::npos
                                                                   : comma - start);
    char *end = nullptr;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end)
      return false;
    ids.push_back(v);
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  return !ids.empty();
}

struct StreamState {
  bool bytes, quiet;
  /// Decodes tokens into whole UTF-8 characters (with --tokenizer).
  hasten_text_stream *text = nullptr;
  bool first = true;
};

int printToken(int64_t token, void *data) {
  auto *state = static_cast<StreamState *>(data);
  if (state->quiet)
    return 0;
  if (state->text) {
    const char *piece;
    size_t length;
    // A token the tokenizer does not know ends generation with its error.
    if (hasten_text_stream_push(state->text, token, &piece, &length) != HASTEN_OK)
      return 1;
    std::fwrite(piece, 1, length, stdout);
  } else if (state->bytes) {
    std::fputc(token >= 32 && token < 127 ? (int)token : token == '\n' ? '\n' : '.', stdout);
  } else {
    std::printf("%s%lld", state->first ? "" : " ", (long long)token);
  }
  state->first = false;
  std::fflush(stdout);
  return 0;
}

bool encodeText(hasten_tokenizer *tokenizer, const std::string &text, bool addSpecial,
                std::vector<int64_t> &ids, std::string &error) {
  size_t count = 0;
  if (hasten_tokenizer_encode(tokenizer, text.data(), text.size(), addSpecial, nullptr, 0,
                              &count) != HASTEN_OK) {
    error = hasten_last_error();
    return false;
  }
  size_t start = ids.size();
  ids.resize(start + count);
  if (hasten_tokenizer_encode(tokenizer, text.data(), text.size(), addSpecial,
                              ids.data() + start, count, &count) != HASTEN_OK) {
    error = hasten_last_error();
    return false;
  }
  return true;
}

/// The conversation rendered through the chat template, with the
/// assistant's turn opened, as token ids.
bool renderConversation(hasten_tokenizer *tokenizer, const Conversation &chat,
                        std::vector<int64_t> &ids, std::string &error) {
  std::vector<const char *> roles, contents;
  for (size_t i = 0; i < chat.roles.size(); ++i) {
    roles.push_back(chat.roles[i].c_str());
    contents.push_back(chat.contents[i].c_str());
  }
  size_t length = 0;
  if (hasten_tokenizer_apply_chat_template(tokenizer, roles.data(), contents.data(),
                                           roles.size(), 1, nullptr, 0, &length) != HASTEN_OK) {
    error = hasten_last_error();
    return false;
  }
  std::string text(length, '\0');
  if (hasten_tokenizer_apply_chat_template(tokenizer, roles.data(), contents.data(),
                                           roles.size(), 1, text.data(), text.size(),
                                           &length) != HASTEN_OK) {
    error = hasten_last_error();
    return false;
  }
  ids.clear();
  // The template writes the special tokens (a BOS) itself.
  return encodeText(tokenizer, text, /*addSpecial=*/false, ids, error);
}

/// What the sequence must still run for `ids`: the sequence keeps the
/// longest prefix it shares with them (a truncation, no copy) and the rest
/// is returned; at least one token, so that generation has logits.
std::vector<int64_t> reuseCachedPrefix(hasten_sequence *sequence,
                                       const std::vector<int64_t> &ids) {
  const int64_t *held = hasten_sequence_tokens(sequence);
  size_t length = (size_t)hasten_sequence_length(sequence), common = 0;
  while (common < length && common < ids.size() && held[common] == ids[common])
    ++common;
  if (common == ids.size() && common > 0)
    --common;
  hasten_sequence_truncate(sequence, (int64_t)common);
  return std::vector<int64_t>(ids.begin() + common, ids.end());
}

/// The text of generated tokens, without special tokens (the assistant's
/// message in a chat).
std::string decodeText(hasten_tokenizer *tokenizer, const int64_t *ids, size_t count) {
  size_t length = 0;
  if (hasten_tokenizer_decode(tokenizer, ids, count, 1, nullptr, 0, &length) != HASTEN_OK)
    return {};
  std::string text(length, '\0');
  hasten_tokenizer_decode(tokenizer, ids, count, 1, text.data(), text.size(), &length);
  return text;
}

/// --interactive: each line from stdin continues the sequence (its cache
/// kept), after the token the last turn ended with; in a chat, each line is
/// the user's next message, and the cache keeps what the re-rendered
/// conversation shares with it. Ends at end of input.
hasten_status converse(hasten_sequence *sequence, hasten_sequence *draft, GenerateFlags &flags,
                       StreamState &stream, std::vector<int64_t> &generated,
                       hasten_generate_stats &stats, Conversation &chat) {
  hasten_status status = HASTEN_OK;
  std::string line;
  for (;;) {
    std::fprintf(stderr, "> ");
    std::fflush(stderr);
    int c;
    line.clear();
    while ((c = std::fgetc(stdin)) != EOF && c != '\n')
      line += static_cast<char>(c);
    if (c == EOF && line.empty())
      return status;
    std::vector<int64_t> turn;
    std::string error;
    if (flags.chat) {
      chat.add("user", line);
      std::vector<int64_t> ids;
      if (!renderConversation(flags.tokenizer, chat, ids, error)) {
        std::fprintf(stderr, "hasten-run: %s\n", error.c_str());
        return HASTEN_ERROR_INVALID_ARGUMENT;
      }
      if ((int64_t)ids.size() >= hasten_sequence_capacity(sequence)) {
        std::fprintf(stderr, "hasten-run: the conversation is %zu tokens, the context %lld; "
                             "ending\n",
                     ids.size(), (long long)hasten_sequence_capacity(sequence));
        return status;
      }
      turn = reuseCachedPrefix(sequence, ids);
    } else {
      // The previous turn's last token was returned, not run: it comes first.
      if (stats.generated_tokens > 0)
        turn.push_back(generated[stats.generated_tokens - 1]);
      if (!flags.tokenizer) {
        for (unsigned char ch : line + "\n")
          turn.push_back(ch);
      } else if (!encodeText(flags.tokenizer, line + "\n", /*addSpecial=*/false, turn,
                             error)) {
        std::fprintf(stderr, "hasten-run: %s\n", error.c_str());
        continue;
      }
    }
    if (hasten_sequence_length(sequence) + (int64_t)turn.size() >=
        hasten_sequence_capacity(sequence)) {
      std::fprintf(stderr, "hasten-run: the context is full (%lld of %lld tokens); ending\n",
                   (long long)hasten_sequence_length(sequence),
                   (long long)hasten_sequence_capacity(sequence));
      return status;
    }
    status = flags.drafter == "none"
                 ? hasten_generate(sequence, turn.data(), turn.size(), &flags.options,
                                   generated.data(), &stats)
                 : hasten_generate_speculative(sequence, draft, turn.data(), turn.size(),
                                               &flags.options, &flags.speculation,
                                               generated.data(), &stats, nullptr);
    const char *tail;
    size_t length;
    if (stream.text && hasten_text_stream_finish(stream.text, &tail, &length) == HASTEN_OK)
      std::fwrite(tail, 1, length, stdout);
    std::printf("\n");
    std::fflush(stdout);
    if (status != HASTEN_OK)
      return status;
    if (flags.chat)
      chat.add("assistant", decodeText(flags.tokenizer, generated.data(),
                                       (size_t)stats.generated_tokens));
  }
}

/// "; ran on 1 of 2 threads, ..." where the runtime ran the
/// entry's last call on fewer threads than it was allowed.
std::string threadsNote(hasten_module *module, const char *entry) {
  int used = hasten_entry_last_threads(module, entry), allowed = hasten_get_num_threads();
  if (used <= 0 || used >= allowed)
    return "";
  return "; ran on " + std::to_string(used) + " of " + std::to_string(allowed) +
         " threads, measured faster at this size";
}

int generate(hasten_module *module, GenerateFlags &flags) {
  if (!hasten_module_is_decoder(module))
    return die("--generate needs a decoder compiled with prefill/decode entries (this module "
               "has none)");
  int64_t vocab = hasten_module_vocab_size(module);
  if (flags.tokenizer && hasten_tokenizer_vocab_size(flags.tokenizer) > vocab)
    return die("the tokenizer has " + std::to_string(hasten_tokenizer_vocab_size(flags.tokenizer)) +
               " tokens but the model's vocabulary only " + std::to_string(vocab) +
               ": they do not belong together");
  std::vector<int64_t> prompt = flags.promptIds;
  Conversation chat;
  if (flags.chat) {
    if (!flags.tokenizer || !*hasten_tokenizer_chat_template(flags.tokenizer))
      return die("--chat needs a tokenizer with a chat template (tokenizer_config.json's "
                 "chat_template beside the tokenizer)");
    if (!flags.promptIds.empty())
      return die("--chat takes the first message as --prompt or --prompt-file, not ids");
    if (!flags.system.empty())
      chat.add("system", flags.system);
    chat.add("user", flags.promptText);
    std::string error;
    if (!renderConversation(flags.tokenizer, chat, prompt, error))
      return die(error);
  } else if (flags.textPrompt && flags.tokenizer) {
    std::string error;
    if (!encodeText(flags.tokenizer, flags.promptText, /*addSpecial=*/true, prompt, error))
      return die(error);
  } else if (flags.textPrompt) {
    if (vocab != 256)
      return die("--prompt needs --tokenizer: this model's vocabulary has " +
                 std::to_string(vocab) + " tokens, so its prompt is not bytes (pass the "
                 "model's tokenizer.json or tokenizer.model, or --prompt-ids)");
    for (unsigned char c : flags.promptText)
      prompt.push_back(c);
  }
  if (prompt.empty())
    return die("--generate needs --prompt-ids, --prompt or --prompt-file (or a tokenizer "
               "with a BOS token)");
  if (flags.tokenizer && flags.stopAtEos && hasten_tokenizer_eos_id(flags.tokenizer) >= 0)
    flags.stopIds.push_back(hasten_tokenizer_eos_id(flags.tokenizer));
  if (flags.prepare) {
    auto start = std::chrono::steady_clock::now();
    if (hasten_module_prepare(module) != HASTEN_OK)
      return die(hasten_last_error());
    std::fprintf(stderr, "weights packed in %.1f ms\n",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
                         .count() * 1e3);
  }
  hasten_sequence *sequence = nullptr, *draft = nullptr;
  if (hasten_sequence_create(module, nullptr, &sequence) != HASTEN_OK)
    return die(hasten_last_error());
  if (flags.drafter == "draft" &&
      hasten_sequence_create_for_model(module, "draft", nullptr, &draft) != HASTEN_OK)
    return die(hasten_last_error());
  StreamState stream{flags.textPrompt, flags.quiet};
  if (flags.tokenizer &&
      hasten_text_stream_create(flags.tokenizer, /*skip_special_tokens=*/1, &stream.text) !=
          HASTEN_OK)
    return die(hasten_last_error());
  flags.options.on_token = printToken;
  flags.options.user_data = &stream;
  flags.options.stop_tokens = flags.stopIds.data();
  flags.options.num_stop_tokens = flags.stopIds.size();
  if (!flags.quiet && flags.textPrompt && !flags.chat)
    std::printf("%s", flags.promptText.c_str());
  // Generation stops at a full cache, so no run returns more than
  // capacity + 1 tokens (the last one is not appended): that bounds the
  // buffer whatever --max-new-tokens asks for.
  int64_t capacity = hasten_module_kv_capacity(module);
  std::vector<int64_t> generated(
      std::clamp<int64_t>(flags.options.max_new_tokens, 0, capacity + 1));
  hasten_generate_stats stats{};
  stats.struct_size = sizeof(stats);
  hasten_speculation_stats spec{};
  spec.struct_size = sizeof(spec);
  hasten_status status =
      flags.drafter == "none"
          ? hasten_generate(sequence, prompt.data(), prompt.size(), &flags.options,
                            generated.data(), &stats)
          : hasten_generate_speculative(sequence, draft, prompt.data(), prompt.size(),
                                        &flags.options, &flags.speculation, generated.data(),
                                        &stats, &spec);
  if (stream.text) {
    const char *tail;
    size_t length;
    if (hasten_text_stream_finish(stream.text, &tail, &length) == HASTEN_OK && !flags.quiet)
      std::fwrite(tail, 1, length, stdout);
  }
  if (!flags.quiet)
    std::printf("\n");
  std::fflush(stdout); // before the statistics on stderr
  if (status == HASTEN_OK && flags.chat)
    chat.add("assistant",
             decodeText(flags.tokenizer, generated.data(), (size_t)stats.generated_tokens));
  if (status == HASTEN_OK && flags.interactive)
    status = converse(sequence, draft, flags, stream, generated, stats, chat);
  hasten_text_stream_free(stream.text);
  if (flags.printIds) {
    std::printf("ids: ");
    for (size_t i = 0; i < prompt.size(); ++i)
      std::printf("%s%lld", i ? "," : "", (long long)prompt[i]);
    for (int64_t i = 0; i < stats.generated_tokens; ++i)
      std::printf(",%lld", (long long)generated[i]);
    std::printf("\n");
  }
  int64_t decodeSteps = stats.generated_tokens > 1 ? stats.generated_tokens - 1 : 0;
  const char *decodeEntry = nullptr;
  std::string decodeThreads;
  if (hasten_find_entry(module, nullptr, HASTEN_ENTRY_DECODE, &decodeEntry) == HASTEN_OK)
    decodeThreads = threadsNote(module, decodeEntry);
  std::fprintf(stderr,
               "prompt %lld tokens, generated %lld%s\n"
               "prefill: %.2f ms, %.1f tokens/s\n"
               "time to first token: %.2f ms\n"
               "decode: %lld tokens in %.2f ms, %.1f tokens/s (%.3f ms/token%s)\n"
               "%s: module for %s, runtime kernels %s\n",
               (long long)stats.prompt_tokens, (long long)stats.generated_tokens,
               stats.stopped_by_token ? " (stop token)" : "", stats.prefill_seconds * 1e3,
               stats.prefill_seconds > 0 ? stats.prompt_tokens / stats.prefill_seconds : 0.0,
               stats.time_to_first_token_seconds * 1e3, (long long)decodeSteps,
               stats.decode_seconds * 1e3,
               stats.decode_seconds > 0 ? decodeSteps / stats.decode_seconds : 0.0,
               decodeSteps ? stats.decode_seconds * 1e3 / decodeSteps : 0.0,
               decodeThreads.c_str(),
               // A CUDA module's host code is what the CPU runs.
               std::strcmp(hasten_module_device(module), "cuda") == 0 ? "cuda (host code)"
                                                                      : "cpu",
               hasten_module_cpu(module), hasten_runtime_kernel_isa());
  hasten_cuda_graph_stats graphs{};
  graphs.struct_size = sizeof(graphs);
  if (hasten_module_cuda_graph_stats(module, &graphs) == HASTEN_OK &&
      graphs.graph_launches + graphs.direct_calls > 0) {
    const char *why = hasten_module_cuda_graph_note(module);
    std::fprintf(stderr,
                 "CUDA graphs: %llu of %llu decode steps as graph launches (%llu instantiated, "
                 "%llu updated in place)%s%s\n",
                 (unsigned long long)graphs.graph_launches,
                 (unsigned long long)(graphs.graph_launches + graphs.direct_calls),
                 (unsigned long long)graphs.instantiations, (unsigned long long)graphs.updates,
                 *why ? "; direct: " : "", why);
  }
  // A CUDA pool that spills to host memory: where the cache is now.
  hasten_kv_placement placement{};
  placement.struct_size = sizeof(placement);
  if (std::strcmp(hasten_module_device(module), "cuda") == 0 &&
      hasten_module_kv_block_size(module) > 0 &&
      hasten_sequence_kv_placement(sequence, &placement) == HASTEN_OK &&
      placement.host_blocks > 0)
    std::fprintf(stderr,
                 "KV cache: %lld blocks in device memory, %lld in pinned host memory (%lld "
                 "moved there from the device); the pool has %lld device and %lld host "
                 "blocks\n",
                 (long long)placement.device_blocks_used, (long long)placement.host_blocks_used,
                 (long long)placement.blocks_moved_to_host, (long long)placement.device_blocks,
                 (long long)placement.host_blocks);
  if (flags.drafter != "none") {
    char adapted[64];
    std::snprintf(adapted, sizeof adapted, "auto (%.2f proposed per pass, last %d)",
                  spec.steps ? double(spec.drafted) / spec.steps : 0.0, (int)spec.last_k);
    std::string k = flags.speculation.k ? std::to_string(flags.speculation.k) : adapted;
    std::fprintf(stderr,
                 "speculation: %s drafter, K %s, %lld target passes, acceptance %.1f%% "
                 "(%lld of %lld proposed), mean accepted length %.2f, %.2f tokens per pass\n"
                 "speculation time: draft %.2f ms, verify %.2f ms\n",
                 flags.drafter == "draft" ? "draft-model" : "n-gram", k.c_str(),
                 (long long)spec.steps,
                 spec.drafted ? 100.0 * spec.accepted / spec.drafted : 0.0,
                 (long long)spec.accepted, (long long)spec.drafted,
                 spec.steps ? double(spec.accepted) / spec.steps : 0.0,
                 spec.steps ? double(decodeSteps) / spec.steps : 0.0, spec.draft_seconds * 1e3,
                 spec.verify_seconds * 1e3);
    if (spec.fused_steps > 0)
      std::fprintf(stderr, "fused spec_step entry: %lld of %lld steps\n",
                   (long long)spec.fused_steps, (long long)spec.steps);
    if (flags.speculation.rapid_context > 0)
      std::fprintf(stderr, "RAPID: the draft read %lld of %lld context tokens\n",
                   (long long)spec.draft_context_tokens, (long long)stats.prompt_tokens);
  }
  std::string error = status == HASTEN_OK ? "" : hasten_last_error();
  hasten_sequence_free(draft);
  hasten_sequence_free(sequence);
  hasten_module_free(module);
  hasten_tokenizer_free(flags.tokenizer);
  return status == HASTEN_OK ? 0 : die(error);
}

// Options. Running an entry and generating are two modes of one tool; the
// generation options belong to --generate and are refused without it.
cl::OptionCategory runCategory("hasten-run options");
cl::OptionCategory generateCategory("generation options (with --generate)");

cl::opt<std::string> modulePath(cl::Positional, cl::desc("<module.so>"), cl::Required,
                                cl::cat(runCategory));
cl::opt<std::string> entryName("entry", cl::desc("The entry to run (default: main, or the "
                                                 "only entry)"),
                               cl::cat(runCategory));
cl::list<std::string> inputBindings(
    "input", cl::desc("An input: NAME=PATH, a .npy file or an ONNX TensorProto .pb file "
                      "(repeatable)"),
    cl::value_desc("NAME=PATH"), cl::cat(runCategory));
cl::opt<std::string> outputDir("output-dir", cl::desc("Write the outputs here"),
                               cl::value_desc("dir"), cl::cat(runCategory));
cl::opt<std::string> outputFormat("output-format", cl::desc("npy (default) or pb"),
                                  cl::init("npy"), cl::cat(runCategory));
cl::opt<int> repeat("repeat", cl::desc("Run N times and print latency percentiles"),
                    cl::init(1), cl::cat(runCategory));
cl::opt<int> warmup("warmup",
                    cl::desc("Untimed runs first (with more than one thread, the first 30 "
                             "runs of a shape also try it on one thread: --warmup 30 times "
                             "the choice alone)"),
                    cl::init(0),
                    cl::cat(runCategory));
cl::opt<int> threads("threads",
                     cl::desc("Threads at most (default: HASTEN_NUM_THREADS, else every core); a call runs on one where that measured faster (HASTEN_ADAPTIVE_THREADS=0: always all)"),
                     cl::init(0), cl::cat(runCategory));
cl::opt<bool> cudaGraphs("cuda-graphs",
                         cl::desc("A CUDA module's decode steps as CUDA graph launches "
                                  "(default; --cuda-graphs=false: every kernel launched)"),
                         cl::init(true), cl::cat(runCategory));
cl::opt<int64_t> kvDeviceTokens(
    "kv-device-tokens",
    cl::desc("A CUDA module with a paged KV cache: tokens of the cache kept in device memory, "
             "the older ones in pinned host memory the GPU reads over the bus (-1: all on the "
             "device; default: what the module was compiled with)"),
    cl::init(-2), cl::cat(runCategory));
cl::opt<bool> verifyWeights("verify-weights",
                            cl::desc("Read every weight byte against the digest the compiler "
                                     "recorded before running (a load reads none of them)"),
                            cl::cat(runCategory));
cl::opt<bool> signatureOnly("signature",
                            cl::desc("Print every entry's signature, roles and KV cache (or "
                                     "only --entry's), and exit"),
                            cl::cat(runCategory));

cl::opt<bool> sampleMode("sample",
                         cl::desc("Run a denoiser module's sampler (its generate entry): the "
                                  "noise drawn with --seed unless given with --input, the "
                                  "conditioning from --input"),
                         cl::cat(runCategory));
cl::opt<std::string> sampleOutput("output", cl::desc("With --sample: write the sample here"),
                                  cl::value_desc("x.npy"), cl::cat(runCategory));
cl::opt<int64_t> streamFrames("frames",
                              cl::desc("With --sample on a stream-batched module: push this "
                                       "many frames (the same conditioning, fresh noise) and "
                                       "print the frames per second"),
                              cl::init(0), cl::cat(runCategory));
cl::opt<bool> generateMode("generate", cl::desc("Generate tokens with a decoder module"),
                           cl::cat(generateCategory));
cl::opt<std::string> promptIds("prompt-ids", cl::desc("The prompt as token ids: 1,17,42"),
                               cl::cat(generateCategory));
cl::opt<std::string> promptText("prompt",
                                cl::desc("The prompt as text, encoded with --tokenizer (without "
                                         "one, a 256-token model reads one token per byte)"),
                                cl::cat(generateCategory));
cl::opt<std::string> tokenizerPath(
    "tokenizer",
    cl::desc("The model's tokenizer: tokenizer.json (byte-level BPE), a SentencePiece "
             ".model, or a folder holding one (with tokenizer_config.json)"),
    cl::value_desc("path"), cl::cat(generateCategory));
cl::opt<std::string> promptFile("prompt-file",
                                cl::desc("Read the prompt text from a file ('-': stdin)"),
                                cl::value_desc("file"), cl::cat(generateCategory));
cl::opt<bool> interactive("interactive",
                          cl::desc("After the answer, read lines from stdin; each continues "
                                   "the same sequence"),
                          cl::cat(generateCategory));
cl::opt<bool> chatMode("chat",
                       cl::desc("The prompt is a user message, rendered through the tokenizer's "
                                "chat template (the default with --interactive when there is "
                                "one)"),
                       cl::cat(generateCategory));
cl::opt<bool> noChatTemplate("no-chat-template",
                             cl::desc("With --interactive, continue the raw text instead of "
                                      "applying the chat template"),
                             cl::cat(generateCategory));
cl::opt<std::string> systemPrompt("system", cl::desc("A system message to start a chat with"),
                                  cl::value_desc("text"), cl::cat(generateCategory));
cl::opt<bool> ignoreEos("ignore-eos",
                        cl::desc("Do not stop at the tokenizer's end-of-sequence token"),
                        cl::cat(generateCategory));
cl::opt<int64_t> maxNewTokens("max-new-tokens", cl::desc("Tokens to generate"), cl::init(-1),
                              cl::cat(generateCategory));
cl::opt<float> temperature("temperature", cl::desc("0 (the default) is greedy"),
                           cl::init(0.0f), cl::cat(generateCategory));
cl::opt<int> topK("top-k", cl::desc("Sample from the K most likely tokens (0: all)"),
                  cl::init(0), cl::cat(generateCategory));
cl::opt<float> topP("top-p", cl::desc("Sample from the smallest set with probability >= P"),
                    cl::init(1.0f), cl::cat(generateCategory));
cl::opt<uint64_t> seed("seed", cl::desc("Sampling seed"), cl::init(0),
                       cl::cat(generateCategory));
cl::opt<std::string> stopIds("stop-ids", cl::desc("Stop at any of these token ids: 0,2"),
                             cl::cat(generateCategory));
cl::opt<bool> printIds("print-ids", cl::desc("Print the prompt and generated ids"),
                       cl::cat(generateCategory));
cl::opt<bool> quiet("quiet", cl::desc("Do not stream the tokens"), cl::cat(generateCategory));
cl::opt<bool> noSpeculation("no-speculation",
                            cl::desc("Run the target alone, even when the module has a draft"),
                            cl::cat(generateCategory));
cl::opt<std::string> drafterName(
    "draft",
    cl::desc("Who proposes tokens: 'draft' (the module's draft model; the default when it has "
             "one) or 'ngram' (prompt lookup, no draft model)"),
    cl::cat(generateCategory));
cl::opt<std::string> specK("spec-k",
                           cl::desc("Tokens proposed per step, 1 to 32, or 'auto' (the default: "
                                    "per step, from the draft's confidence, measured "
                                    "acceptance and step costs)"),
                           cl::init("auto"), cl::cat(generateCategory));
cl::opt<float> bildFallback("bild-fallback",
                            cl::desc("BiLD fallback: the draft stops proposing when its top "
                                     "probability is below P (0: off)"),
                            cl::init(0.0f), cl::cat(generateCategory));
cl::opt<float> bildRollback("bild-rollback",
                            cl::desc("BiLD rollback: also accept a proposal while the target's "
                                     "-log p of it is at most T (0: off; changes the output)"),
                            cl::init(0.0f), cl::cat(generateCategory));
cl::opt<int64_t> rapidContext("rapid-context",
                              cl::desc("RAPID: the draft reads at most N context tokens, "
                                       "retrieved by BM25 against the recent text (0: off)"),
                              cl::init(0), cl::cat(generateCategory));
cl::opt<int64_t> rapidChunk("rapid-chunk", cl::desc("Tokens per RAPID chunk"), cl::init(64),
                            cl::cat(generateCategory));
cl::opt<int> ngramMax("ngram-max", cl::desc("Longest n-gram prompt lookup matches"),
                      cl::init(3), cl::cat(generateCategory));
cl::opt<bool> cold("cold", cl::desc("Leave weight packing to the first steps (timed)"),
                   cl::cat(generateCategory));

} // namespace

/// --sample --frames N on a stream-batched module: N pushes, frames per
/// second over the pushes that produced a frame.
int runStream(hasten_module *module, const char *entry, const std::vector<const char *> &names,
              const std::vector<hasten_tensor *> &inputs) {
  hasten_sample_stream *stream = nullptr;
  if (hasten_sample_stream_create(module, entry, seed, &stream) != HASTEN_OK)
    return die(hasten_last_error());
  int64_t depth = hasten_sample_stream_depth(stream), produced = 0;
  hasten_tensor *last = nullptr;
  double seconds = 0;
  for (int64_t f = 0; f < streamFrames; ++f) {
    hasten_tensor *frame = nullptr;
    auto start = std::chrono::steady_clock::now();
    if (hasten_sample_stream_push(stream, names.data(), inputs.data(), inputs.size(), &frame) !=
        HASTEN_OK)
      return die(hasten_last_error());
    if (frame) {
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      ++produced;
      hasten_tensor_free(last);
      last = frame;
    }
  }
  std::printf("stream of %lld frames in flight: %lld frames pushed, %lld out, %.1f frames/s "
              "(%.3f ms per frame) once full%s\n",
              (long long)depth, (long long)streamFrames.getValue(), (long long)produced,
              produced ? produced / seconds : 0.0, produced ? seconds * 1e3 / produced : 0.0,
              threadsNote(module, entry).c_str());
  if (last && !sampleOutput.empty()) {
    std::string error;
    if (!hasten::writeTensorFile(sampleOutput, last, hasten_signature_name(module, entry, 1, 0),
                                 error))
      return die(error);
  }
  hasten_tensor_free(last);
  hasten_sample_stream_free(stream);
  return 0;
}

/// --sample: one or more runs of the generate entry through
/// hasten_generate_sample, with the time per sample and per denoiser step.
int runSampler(hasten_module *module, const std::map<std::string, std::string> &inputFiles) {
  const char *entry = nullptr;
  bool stream = false;
  if (!entryName.empty()) {
    entry = entryName.c_str();
    hasten_entry_kind kind;
    if (hasten_entry_info(module, entry, &kind, nullptr) != HASTEN_OK)
      return die(hasten_last_error());
    stream = kind == HASTEN_ENTRY_SAMPLER_STREAM;
  } else if (hasten_find_entry(module, nullptr, HASTEN_ENTRY_GENERATE, &entry) != HASTEN_OK) {
    if (hasten_find_entry(module, nullptr, HASTEN_ENTRY_SAMPLER_STREAM, &entry) != HASTEN_OK)
      return die("the module has no generate entry (compile the denoiser with hasten-compile "
                 "--sampler)");
    stream = true;
  }
  if (stream != (streamFrames > 0))
    return die(stream ? "the module's sampler is stream-batched: give --frames N"
                      : "--frames needs a stream-batched module (hasten-compile --stream-batch)");
  std::vector<std::string> names;
  std::vector<hasten_tensor *> inputs;
  for (const auto &[name, path] : inputFiles) {
    std::string error;
    hasten_tensor *t = hasten::readTensorFile(path, error);
    if (!t)
      return die(error);
    names.push_back(name);
    inputs.push_back(t);
  }
  std::vector<const char *> namePointers;
  for (const std::string &name : names)
    namePointers.push_back(name.c_str());
  if (stream)
    return runStream(module, entry, namePointers, inputs);
  hasten_tensor *sample = nullptr;
  std::vector<double> seconds;
  hasten_sample_stats stats{sizeof(hasten_sample_stats), 0, 0};
  for (int r = 0; r < warmup + repeat; ++r) {
    hasten_tensor_free(sample);
    sample = nullptr;
    if (hasten_generate_sample(module, entry, seed, namePointers.data(), inputs.data(),
                               inputs.size(), &sample, &stats) != HASTEN_OK)
      return die(hasten_last_error());
    if (r >= warmup)
      seconds.push_back(stats.seconds);
  }
  std::sort(seconds.begin(), seconds.end());
  double median = seconds[seconds.size() / 2] * 1e3;
  std::string shape;
  for (int d = 0; d < hasten_tensor_rank(sample); ++d)
    shape += (d ? "x" : "") + std::to_string(hasten_tensor_dims(sample)[d]);
  std::printf("sample %s[%s]: %.3f ms%s, %lld denoiser steps, %.3f ms per step (seed %llu%s)\n",
              hasten_dtype_name(hasten_tensor_dtype(sample)), shape.c_str(), median,
              repeat > 1 ? " (median)" : "", (long long)stats.steps,
              stats.steps ? median / double(stats.steps) : 0.0,
              (unsigned long long)seed.getValue(), threadsNote(module, entry).c_str());
  std::string path = sampleOutput;
  if (path.empty() && !outputDir.empty()) {
    mkdir(outputDir.c_str(), 0755);
    path = outputDir + "/" + hasten_signature_name(module, entry, 1, 0) + "." + outputFormat;
  }
  if (!path.empty()) {
    std::string error;
    if (!hasten::writeTensorFile(path, sample, hasten_signature_name(module, entry, 1, 0),
                                 error))
      return die(error);
  }
  for (hasten_tensor *t : inputs)
    hasten_tensor_free(t);
  hasten_tensor_free(sample);
  hasten_module_free(module);
  return 0;
}

int main(int argc, char **argv) {
  hasten::installVersionPrinter("hasten-run", hasten::kManifestFormatVersion);
  cl::HideUnrelatedOptions({&runCategory, &generateCategory});
  cl::ParseCommandLineOptions(
      argc, argv,
      "run an entry of a hasten module, or generate tokens with a decoder module\n\n"
      "  hasten-run model.so --input x=x.npy [--entry NAME] [--output-dir DIR] [--repeat N]\n"
      "  hasten-run decoder.so --generate (--prompt-ids 1,17,42 | --prompt TEXT) "
      "[--max-new-tokens N]\n");
  std::map<std::string, std::string> inputFiles;
  for (const std::string &binding : inputBindings) {
    size_t eq = binding.find('=');
    if (eq == std::string::npos || eq == 0)
      return die("--input expects NAME=PATH, got '" + binding + "'");
    inputFiles[binding.substr(0, eq)] = binding.substr(eq + 1);
  }
  if (outputFormat != "npy" && outputFormat != "pb")
    return die("--output-format must be npy or pb");
  if (repeat < 1)
    return die("--repeat must be at least 1");
  if (warmup < 0)
    return die("--warmup must not be negative");
  if (threads.getNumOccurrences()) {
    if (threads < 1)
      return die("--threads must be at least 1");
    if (hasten_set_num_threads(threads) != HASTEN_OK)
      return die(hasten_last_error());
  }
  GenerateFlags gen;
  hasten_generate_options_init(&gen.options);
  gen.enabled = generateMode;
  if (!gen.enabled) {
    for (const auto &[name, option] : cl::getRegisteredOptions())
      if (option->getNumOccurrences() &&
          llvm::is_contained(option->Categories, &generateCategory) &&
          !(sampleMode && name == "seed"))
        return die("--" + name.str() + " needs --generate" +
                   (name == "seed" ? " or --sample" : ""));
  }
  if (promptIds.getNumOccurrences() && !parseIds(promptIds.c_str(), gen.promptIds))
    return die("--prompt-ids expects comma-separated token ids, got '" + promptIds + "'");
  if (promptText.getNumOccurrences() + promptFile.getNumOccurrences() +
          promptIds.getNumOccurrences() > 1)
    return die("give one of --prompt, --prompt-file and --prompt-ids");
  if (promptText.getNumOccurrences()) {
    gen.promptText = promptText;
    gen.textPrompt = true;
  }
  if (promptFile.getNumOccurrences()) {
    std::string error;
    if (!readPromptFile(promptFile, gen.promptText, error))
      return die(error);
    gen.textPrompt = true;
  }
  if (interactive && promptFile == "-")
    return die("--interactive reads its turns from stdin, so the prompt cannot come from "
               "there too");
  gen.interactive = interactive;
  gen.stopAtEos = !ignoreEos;
  if (stopIds.getNumOccurrences() && !parseIds(stopIds.c_str(), gen.stopIds))
    return die("--stop-ids expects comma-separated token ids, got '" + stopIds + "'");
  if (maxNewTokens.getNumOccurrences()) {
    if (maxNewTokens < 0)
      return die("--max-new-tokens must not be negative");
    gen.options.max_new_tokens = maxNewTokens;
  }
  if (!(temperature >= 0) || std::isinf(temperature))
    return die("--temperature must be a non-negative number, got " +
               std::to_string(temperature.getValue()));
  gen.options.temperature = temperature;
  if (topK < 0)
    return die("--top-k must not be negative");
  gen.options.top_k = topK;
  if (!(topP > 0 && topP <= 1))
    return die("--top-p must be in (0, 1]");
  gen.options.top_p = topP;
  if (seed.getNumOccurrences())
    gen.options.seed = seed;
  gen.printIds = printIds;
  gen.quiet = quiet;
  gen.prepare = !cold;
  hasten_speculation_options_init(&gen.speculation);
  if (specK != "auto") {
    std::vector<int64_t> k;
    if (!parseIds(specK.c_str(), k) || k.size() != 1 || k[0] < 1 || k[0] > 32)
      return die("--spec-k must be auto or a number from 1 to 32, got '" + specK + "'");
    gen.speculation.k = (int32_t)k[0];
  }
  if (!(bildFallback >= 0 && bildFallback < 1) || !(bildRollback >= 0) ||
      std::isinf(bildRollback))
    return die("--bild-fallback must be in [0, 1) and --bild-rollback a non-negative number");
  gen.speculation.fallback_threshold = bildFallback;
  gen.speculation.rollback_threshold = bildRollback;
  if (rapidContext < 0 || rapidChunk < 1)
    return die("--rapid-context must not be negative and --rapid-chunk must be positive");
  gen.speculation.rapid_context = rapidContext;
  gen.speculation.rapid_chunk = rapidChunk;
  if (ngramMax < 1 || ngramMax > 64)
    return die("--ngram-max must be in [1, 64]");
  gen.speculation.ngram_max = ngramMax;
  if (!drafterName.empty() && drafterName != "draft" && drafterName != "ngram")
    return die("--draft must be 'draft' (the module's draft model) or 'ngram' (prompt "
               "lookup), got '" + drafterName + "'");

  if (!tokenizerPath.empty() &&
      hasten_tokenizer_load(tokenizerPath.c_str(), &gen.tokenizer) != HASTEN_OK)
    return die(hasten_last_error());
  if (chatMode && noChatTemplate)
    return die("--chat and --no-chat-template contradict each other");
  gen.chat = chatMode || (interactive && !noChatTemplate && gen.tokenizer &&
                          *hasten_tokenizer_chat_template(gen.tokenizer));
  gen.system = systemPrompt;
  if (!gen.system.empty() && !gen.chat)
    return die("--system needs a chat (--chat, or --interactive with a chat template)");
  hasten_module *module = nullptr;
  if (hasten_module_load(modulePath.c_str(), &module) != HASTEN_OK)
    return die(hasten_last_error());
  if (hasten_module_set_cuda_graphs(module, cudaGraphs) != HASTEN_OK)
    return die(hasten_last_error());
  if (kvDeviceTokens.getNumOccurrences() &&
      hasten_module_set_kv_device_tokens(module, kvDeviceTokens) != HASTEN_OK)
    return die(hasten_last_error());
  if (verifyWeights) {
    auto start = std::chrono::steady_clock::now();
    if (hasten_module_verify_weights(module) != HASTEN_OK)
      return die(hasten_last_error());
    std::fprintf(stderr, "weights verified: %.1f MB in %.1f ms\n",
                 hasten_module_weight_bytes(module) / 1e6,
                 std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count());
  }
  if (gen.enabled) {
    // A module with a draft model speculates unless told otherwise.
    const char *draftEntry = nullptr;
    bool hasDraft =
        hasten_find_entry(module, "draft", HASTEN_ENTRY_DECODE, &draftEntry) == HASTEN_OK;
    gen.drafter = noSpeculation                  ? "none"
                  : !drafterName.empty()         ? std::string(drafterName)
                  : hasDraft                     ? "draft"
                                                 : "none";
    if (gen.drafter == "draft" && !hasDraft)
      return die("--draft=draft needs a module compiled with hasten-compile --draft");
    // A module compiled with --spec-k=K runs its fused spec_step at that K
    // unless another K is asked for.
    const char *fused = nullptr;
    if (gen.drafter == "draft" && specK == "auto" &&
        hasten_find_entry(module, "", HASTEN_ENTRY_SPEC_STEP, &fused) == HASTEN_OK) {
      size_t outputs = 0;
      hasten_entry_num_tensors(module, fused, 1, &outputs);
      for (size_t i = 0; i < outputs; ++i) {
        hasten_tensor_role role;
        int64_t dims[2];
        if (hasten_signature_role(module, fused, 1, i, &role) == HASTEN_OK &&
            role == HASTEN_ROLE_ACCEPTED_TOKENS &&
            hasten_signature_dims(module, fused, 1, i, dims, 2) == 2)
          gen.speculation.k = (int32_t)(dims[1] - 1);
      }
    }
    if (noSpeculation && !drafterName.empty())
      return die("--draft and --no-speculation contradict each other");
  }
  if (gen.enabled && sampleMode)
    return die("--generate and --sample contradict each other");
  if (!sampleMode && sampleOutput.getNumOccurrences())
    return die("--output needs --sample (or use --output-dir)");
  if (!sampleMode && streamFrames.getNumOccurrences())
    return die("--frames needs --sample");
  if (gen.enabled)
    return generate(module, gen);
  if (sampleMode)
    return runSampler(module, inputFiles);
  if (signatureOnly) {
    int rc = printSignatures(module, modulePath, entryName);
    hasten_module_free(module);
    return rc;
  }
  if (entryName.empty()) {
    // A decoder's graph is `main`; its prefill/decode entries need a cache.
    for (size_t i = 0; i < hasten_module_num_entries(module); ++i)
      if (std::string(hasten_module_entry_name(module, i)) == "main")
        entryName = "main";
    if (entryName.empty() && hasten_module_num_entries(module) != 1)
      return die("the module has several entries; choose one with --entry");
    if (entryName.empty())
      entryName = hasten_module_entry_name(module, 0);
  }
  const char *entry = entryName.c_str();
  size_t numInputs = 0, numOutputs = 0;
  if (hasten_entry_num_tensors(module, entry, 0, &numInputs) != HASTEN_OK ||
      hasten_entry_num_tensors(module, entry, 1, &numOutputs) != HASTEN_OK)
    return die(hasten_last_error());
  std::vector<hasten_tensor *> inputs(numInputs, nullptr);
  for (size_t i = 0; i < numInputs;) {
    // One ONNX value: a tensor, or the parts of a sequence, an optional or
    // strings.
    hasten::ValueLayout layout = valueLayout(module, entry, 0, i);
    size_t main = i + (layout.optional ? 1 : 0);
    std::string name = hasten_signature_name(module, entry, 0, main);
    auto it = inputFiles.find(name);
    if (it == inputFiles.end())
      return die("missing input '" + name + "' (" + describe(module, entry, 0, main) +
                 "); pass --input " + name + "=FILE");
    std::string error;
    std::vector<hasten_tensor *> parts;
    if (!hasten::readValueFile(it->second, layout, parts, error,
                               layout.optional || layout.sequence || layout.strings
                                   ? 0
                                   : inputFileBound(module, entry, i, it->second)))
      return die(error);
    std::copy(parts.begin(), parts.end(), inputs.begin() + i);
    inputFiles.erase(it);
    // numpy has no bfloat16: ONNX test data stores it as uint16 bits.
    if (!layout.sequence && hasten_signature_dtype(module, entry, 0, main) == HASTEN_BF16 &&
        hasten_tensor_dtype(inputs[main]) == HASTEN_U16) {
      hasten_tensor *bits = inputs[main];
      hasten_tensor *asBf16 = nullptr;
      if (hasten_tensor_create(HASTEN_BF16, hasten_tensor_rank(bits), hasten_tensor_dims(bits),
                               &asBf16) != HASTEN_OK)
        return die(hasten_last_error());
      std::memcpy(hasten_tensor_data(asBf16), hasten_tensor_data(bits),
                  hasten_tensor_size_bytes(bits));
      hasten_tensor_free(bits);
      inputs[main] = asBf16;
    }
    i += layout.numParts();
  }
  if (!inputFiles.empty())
    return die("entry '" + entryName + "' has no input named '" + inputFiles.begin()->first +
               "'");

  std::vector<hasten_tensor *> outputs(numOutputs, nullptr);
  std::vector<double> latencies;
  // Warm-up runs (weight packing, caches) are not timed.
  for (int r = 0; r < warmup + repeat; ++r) {
    for (hasten_tensor *&t : outputs) {
      hasten_tensor_free(t);
      t = nullptr;
    }
    auto start = std::chrono::steady_clock::now();
    if (hasten_run(module, entry, inputs.data(), numInputs, outputs.data(), numOutputs) !=
        HASTEN_OK)
      return die(hasten_last_error());
    if (r >= warmup)
      latencies.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count());
  }

  for (size_t o = 0; o < numOutputs;) {
    hasten::ValueLayout layout = valueLayout(module, entry, 1, o);
    size_t main = o + (layout.optional ? 1 : 0);
    std::string name = hasten_signature_name(module, entry, 1, main);
    std::string summary;
    if (layout.optional && !*static_cast<const uint8_t *>(hasten_tensor_data(outputs[o])))
      summary = "none";
    else if (layout.strings)
      summary = "string" + dimsOf(outputs[main + 1]);
    else if (layout.sequence)
      summary = "sequence of " + std::to_string(hasten_tensor_dims(outputs[main + 1])[0]) + " " +
                hasten_dtype_name(hasten_tensor_dtype(outputs[main])) + " tensors";
    else
      summary = hasten_dtype_name(hasten_tensor_dtype(outputs[main])) + dimsOf(outputs[main]);
    std::printf("output %s: %s\n", name.c_str(), summary.c_str());
    if (!outputDir.empty()) {
      mkdir(outputDir.c_str(), 0755);
      std::string safe = name;
      for (char &c : safe)
        if (c == '/' || c == '\\')
          c = '_';
      std::string format = layout.optional || layout.sequence || layout.strings
                               ? std::string("pb")
                               : std::string(outputFormat);
      std::string path = outputDir + "/" + safe + "." + format;
      std::string error;
      if (!hasten::writeValueFile(path, layout, outputs.data() + o, name, error))
        return die(error);
    }
    o += layout.numParts();
  }
  if (repeat > 1) {
    std::vector<double> sorted = latencies;
    std::sort(sorted.begin(), sorted.end());
    auto pct = [&](double p) { return sorted[(size_t)(p * (sorted.size() - 1) + 0.5)]; };
    double mean = 0;
    for (double l : latencies)
      mean += l;
    mean /= latencies.size();
    std::printf("latency over %d runs: p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, min %.3f ms, "
                "mean %.3f ms%s\n",
                int(repeat), pct(0.5), pct(0.9), pct(0.99), sorted.front(), mean,
                threadsNote(module, entry).c_str());
  } else {
    std::printf("latency: %.3f ms\n", latencies[0]);
  }
  for (hasten_tensor *t : inputs)
    hasten_tensor_free(t);
  for (hasten_tensor *t : outputs)
    hasten_tensor_free(t);
  hasten_module_free(module);
  return 0;
}
