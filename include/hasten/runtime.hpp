//===- hasten/runtime.hpp - C++ RAII wrapper over the runtime C API --------===//
//
// Header-only: owns modules and tensors, turns status codes into
// hasten::Error values. No exceptions are thrown; failures come back as
// std::optional/empty results plus the error message.
//
//   hasten::Module model;
//   std::string error;
//   if (!model.load("model.so", &error)) { ... }
//   hasten::Tensor x = hasten::Tensor::create(HASTEN_F32, {1, 8});
//   std::vector<hasten::Tensor> outputs;
//   if (!model.run("main", {&x}, outputs, &error)) { ... }
//
// Decoders: sequences own their KV cache (or blocks of a KVPool) and feed
// tokens through the prefill/decode entries; generate() samples.
//
//   hasten::Sequence seq;
//   if (!seq.create(model, nullptr, &error)) { ... }
//   std::vector<float> logits;
//   seq.append({1, 17, 42}, &logits, &error);
//   std::vector<int64_t> tokens = seq.generate({5}, options, &stats, &error);
//
// Lifetimes follow the C API: free sequences before their pool, and both
// before their module (destroy them in that order).
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_RUNTIME_HPP
#define HASTEN_RUNTIME_HPP

#include "hasten/runtime.h"

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace hasten {

/// An owned hasten_tensor, released on destruction.
class Tensor {
public:
  Tensor() = default;
  explicit Tensor(hasten_tensor *tensor) : tensor_(tensor) {}
  Tensor(Tensor &&other) noexcept : tensor_(std::exchange(other.tensor_, nullptr)) {}
  Tensor &operator=(Tensor &&other) noexcept {
    std::swap(tensor_, other.tensor_);
    return *this;
  }
  Tensor(const Tensor &) = delete;
  Tensor &operator=(const Tensor &) = delete;
  ~Tensor() { hasten_tensor_free(tensor_); }

  /// Zero-initialized owned memory; an empty Tensor on failure.
  static Tensor create(hasten_dtype dtype, const std::vector<int64_t> &dims) {
    hasten_tensor *t = nullptr;
    hasten_tensor_create(dtype, (int)dims.size(), dims.data(), &t);
    return Tensor(t);
  }
  /// Borrows `data`, which must outlive the tensor.
  static Tensor wrap(hasten_dtype dtype, const std::vector<int64_t> &dims, void *data) {
    hasten_tensor *t = nullptr;
    hasten_tensor_wrap(dtype, (int)dims.size(), dims.data(), data, &t);
    return Tensor(t);
  }

  explicit operator bool() const { return tensor_ != nullptr; }
  hasten_tensor *get() const { return tensor_; }
  hasten_dtype dtype() const { return hasten_tensor_dtype(tensor_); }
  std::vector<int64_t> dims() const {
    const int64_t *d = hasten_tensor_dims(tensor_);
    return std::vector<int64_t>(d, d + hasten_tensor_rank(tensor_));
  }
  size_t numElements() const { return hasten_tensor_num_elements(tensor_); }
  template <typename T> T *data() const { return static_cast<T *>(hasten_tensor_data(tensor_)); }

private:
  hasten_tensor *tensor_ = nullptr;
};

/// A loaded module. Safe to run from several threads at once.
class Module {
public:
  Module() = default;
  Module(Module &&other) noexcept : module_(std::exchange(other.module_, nullptr)) {}
  Module &operator=(Module &&other) noexcept {
    std::swap(module_, other.module_);
    return *this;
  }
  Module(const Module &) = delete;
  Module &operator=(const Module &) = delete;
  ~Module() { hasten_module_free(module_); }

  bool load(const std::string &path, std::string *error = nullptr) {
    hasten_module_free(module_);
    module_ = nullptr;
    if (hasten_module_load(path.c_str(), &module_) == HASTEN_OK)
      return true;
    if (error)
      *error = hasten_last_error();
    return false;
  }

  explicit operator bool() const { return module_ != nullptr; }
  hasten_module *get() const { return module_; }

  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (size_t i = 0; i < hasten_module_num_entries(module_); ++i)
      names.push_back(hasten_module_entry_name(module_, i));
    return names;
  }

  /// The threads `entry`'s last call ran with (hasten_entry_last_threads).
  int lastThreads(const std::string &entry) const {
    return hasten_entry_last_threads(module_, entry.c_str());
  }

  /// Runs `entry` on `inputs`; fills `outputs` with owned tensors.
  bool run(const std::string &entry, std::initializer_list<const Tensor *> inputs,
           std::vector<Tensor> &outputs, std::string *error = nullptr) {
    std::vector<hasten_tensor *> in;
    for (const Tensor *t : inputs)
      in.push_back(t ? t->get() : nullptr);
    return run(entry, in, outputs, error);
  }
  bool run(const std::string &entry, const std::vector<hasten_tensor *> &inputs,
           std::vector<Tensor> &outputs, std::string *error = nullptr) {
    size_t count = 0;
    if (hasten_entry_num_tensors(module_, entry.c_str(), 1, &count) != HASTEN_OK) {
      if (error)
        *error = hasten_last_error();
      return false;
    }
    std::vector<hasten_tensor *> out(count, nullptr);
    if (hasten_run(module_, entry.c_str(), inputs.data(), inputs.size(), out.data(),
                   out.size()) != HASTEN_OK) {
      if (error)
        *error = hasten_last_error();
      return false;
    }
    outputs.clear();
    for (hasten_tensor *t : out)
      outputs.emplace_back(t);
    return true;
  }

  /// Packs a decoder's weights now (hasten_module_prepare) so that the
  /// first request does not pay for it.
  bool prepare(std::string *error = nullptr) {
    if (hasten_module_prepare(module_) == HASTEN_OK)
      return true;
    if (error)
      *error = hasten_last_error();
    return false;
  }

  bool isDecoder() const { return hasten_module_is_decoder(module_); }
  int64_t vocabSize() const { return hasten_module_vocab_size(module_); }
  int64_t kvCapacity() const { return hasten_module_kv_capacity(module_); }

private:
  hasten_module *module_ = nullptr;
};

/// Sampling and stopping options for Sequence::generate, initialized to the
/// C API's defaults (greedy, 32 tokens).
struct GenerateOptions : hasten_generate_options {
  GenerateOptions() { hasten_generate_options_init(this); }
};

/// Speculation settings for Sequence::generateSpeculative, initialized to the
/// C API's defaults (K chosen adaptively, no BiLD, no RAPID).
struct SpeculationOptions : hasten_speculation_options {
  SpeculationOptions() { hasten_speculation_options_init(this); }
};

/// A pool of KV-cache blocks that several sequences of a paged module
/// share. Free (destroy) it after every sequence using it.
class KVPool {
public:
  KVPool() = default;
  KVPool(KVPool &&other) noexcept : pool_(std::exchange(other.pool_, nullptr)) {}
  KVPool &operator=(KVPool &&other) noexcept {
    std::swap(pool_, other.pool_);
    return *this;
  }
  KVPool(const KVPool &) = delete;
  KVPool &operator=(const KVPool &) = delete;
  ~KVPool() { hasten_kv_pool_free(pool_); }

  bool create(Module &module, int64_t maxTokens, std::string *error = nullptr) {
    hasten_kv_pool_free(pool_);
    pool_ = nullptr;
    return check(hasten_kv_pool_create(module.get(), maxTokens, &pool_), error);
  }
  hasten_kv_pool *get() const { return pool_; }
  int64_t numBlocks() const { return hasten_kv_pool_num_blocks(pool_); }
  int64_t freeBlocks() const { return hasten_kv_pool_free_blocks(pool_); }

private:
  static bool check(hasten_status status, std::string *error) {
    if (status != HASTEN_OK && error)
      *error = hasten_last_error();
    return status == HASTEN_OK;
  }
  hasten_kv_pool *pool_ = nullptr;
};

/// One sequence of a decoder module: its tokens and KV cache.
class Sequence {
public:
  Sequence() = default;
  Sequence(Sequence &&other) noexcept : seq_(std::exchange(other.seq_, nullptr)) {}
  Sequence &operator=(Sequence &&other) noexcept {
    std::swap(seq_, other.seq_);
    return *this;
  }
  Sequence(const Sequence &) = delete;
  Sequence &operator=(const Sequence &) = delete;
  ~Sequence() { hasten_sequence_free(seq_); }

  /// A new, empty sequence; `pool` may be null (see hasten_sequence_create).
  bool create(Module &module, KVPool *pool = nullptr, std::string *error = nullptr) {
    hasten_sequence_free(seq_);
    seq_ = nullptr;
    return check(hasten_sequence_create(module.get(), pool ? pool->get() : nullptr, &seq_),
                 error);
  }
  /// A new, empty sequence of the decoder in model namespace `model` (a
  /// draft compiled with hasten-compile --draft is "draft").
  bool createForModel(Module &module, const char *model, KVPool *pool = nullptr,
                      std::string *error = nullptr) {
    hasten_sequence_free(seq_);
    seq_ = nullptr;
    return check(hasten_sequence_create_for_model(module.get(), model,
                                                  pool ? pool->get() : nullptr, &seq_),
                 error);
  }
  /// A copy that continues independently (paged: sharing blocks).
  bool fork(Sequence &out, std::string *error = nullptr) const {
    hasten_sequence_free(out.seq_);
    out.seq_ = nullptr;
    return check(hasten_sequence_fork(seq_, &out.seq_), error);
  }
  /// Runs `tokens` through the model; `logits` (if given) gets the last
  /// token's logits. On failure nothing changes.
  bool append(const std::vector<int64_t> &tokens, std::vector<float> *logits = nullptr,
              std::string *error = nullptr) {
    if (logits)
      logits->resize(hasten_sequence_vocab_size(seq_));
    return check(hasten_sequence_append(seq_, tokens.data(), tokens.size(),
                                        logits ? logits->data() : nullptr),
                 error);
  }
  /// Like append, but `logits` (if given) gets every token's logits, one
  /// row of vocabulary size per token (the verify entry).
  bool verify(const std::vector<int64_t> &tokens, std::vector<float> *logits = nullptr,
              std::string *error = nullptr) {
    if (logits)
      logits->resize(tokens.size() * hasten_sequence_vocab_size(seq_));
    return check(hasten_sequence_verify(seq_, tokens.data(), tokens.size(),
                                        logits ? logits->data() : nullptr),
                 error);
  }
  /// Keeps the first `length` tokens (rolls back the rest).
  bool truncate(int64_t length, std::string *error = nullptr) {
    return check(hasten_sequence_truncate(seq_, length), error);
  }
  bool reset(std::string *error = nullptr) { return check(hasten_sequence_reset(seq_), error); }
  int64_t length() const { return hasten_sequence_length(seq_); }
  std::vector<int64_t> tokens() const {
    const int64_t *t = hasten_sequence_tokens(seq_);
    return t ? std::vector<int64_t>(t, t + length()) : std::vector<int64_t>();
  }
  /// Generates after `prompt` (see hasten_generate); returns the generated
  /// tokens, which on an error are the ones generated before it.
  std::vector<int64_t> generate(const std::vector<int64_t> &prompt,
                                const GenerateOptions &options,
                                hasten_generate_stats *stats = nullptr,
                                std::string *error = nullptr) {
    std::vector<int64_t> generated(options.max_new_tokens > 0 ? options.max_new_tokens : 0);
    hasten_generate_stats local{};
    local.struct_size = sizeof(local);
    hasten_generate_stats &st = stats ? *stats : local;
    st.struct_size = sizeof(st);
    bool ok = check(hasten_generate(seq_, prompt.data(), prompt.size(), &options,
                                    generated.data(), &st),
                    error);
    generated.resize(ok || st.generated_tokens >= 0 ? st.generated_tokens : 0);
    return generated;
  }
  /// generate() with `draft` proposing tokens (null: prompt lookup); see
  /// hasten_generate_speculative.
  std::vector<int64_t> generateSpeculative(const std::vector<int64_t> &prompt, Sequence *draft,
                                           const GenerateOptions &options,
                                           const SpeculationOptions &speculation,
                                           hasten_generate_stats *stats = nullptr,
                                           hasten_speculation_stats *speculationStats = nullptr,
                                           std::string *error = nullptr) {
    std::vector<int64_t> generated(options.max_new_tokens > 0 ? options.max_new_tokens : 0);
    hasten_generate_stats local{};
    hasten_generate_stats &st = stats ? *stats : local;
    st.struct_size = sizeof(st);
    hasten_speculation_stats localSpec{};
    hasten_speculation_stats &ss = speculationStats ? *speculationStats : localSpec;
    ss.struct_size = sizeof(ss);
    check(hasten_generate_speculative(seq_, draft ? draft->seq_ : nullptr, prompt.data(),
                                      prompt.size(), &options, &speculation, generated.data(),
                                      &st, &ss),
          error);
    generated.resize(st.generated_tokens > 0 ? st.generated_tokens : 0);
    return generated;
  }
  hasten_sequence *get() const { return seq_; }

private:
  static bool check(hasten_status status, std::string *error) {
    if (status != HASTEN_OK && error)
      *error = hasten_last_error();
    return status == HASTEN_OK;
  }
  hasten_sequence *seq_ = nullptr;
};

} // namespace hasten

#endif // HASTEN_RUNTIME_HPP
