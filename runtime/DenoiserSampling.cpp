//===- DenoiserSampling.cpp - running a compiled few-step sampler ----------===//
//
// hasten_generate_sample: binds a generate entry's inputs by name, draws the
// noise the caller leaves out, and runs the entry. Everything goes through
// the public API (hasten_run checks the inputs against the signature).
//
//===----------------------------------------------------------------------===//

#include "RuntimeInternal.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace hasten::runtime;

namespace {

uint64_t splitmix64(uint64_t &state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// A uniform double in (0, 1].
double uniform(uint64_t &state) { return double((splitmix64(state) >> 11) + 1) * 0x1.0p-53; }

struct TensorDeleter {
  void operator()(hasten_tensor *t) const { hasten_tensor_free(t); }
};
using OwnedTensor = std::unique_ptr<hasten_tensor, TensorDeleter>;

} // namespace

void hasten_gaussian_noise(uint64_t seed, uint64_t stream, float *data, size_t count) {
  uint64_t state = seed ^ (0xd1b54a32d192ed03ull * (stream + 1));
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  for (size_t i = 0; i < count; i += 2) {
    double radius = std::sqrt(-2.0 * std::log(uniform(state)));
    double angle = kTwoPi * uniform(state);
    data[i] = float(radius * std::cos(angle));
    if (i + 1 < count)
      data[i + 1] = float(radius * std::sin(angle));
  }
}

namespace {

/// The inputs of `entry` bound by name: what the caller gives, the state
/// (role SAMPLER_STATE) from `state` in order, and noise drawn for the
/// noise inputs not given, as noise stream `streamBase + index`.
hasten_status bindInputs(hasten_module *module, const char *entry, uint64_t seed,
                         uint64_t streamBase, const char *const *names,
                         hasten_tensor *const *inputs, size_t numInputs,
                         const std::vector<hasten_tensor *> &state,
                         std::vector<hasten_tensor *> &args, std::vector<OwnedTensor> &drawn) {
  if (numInputs && (!names || !inputs))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "%s: null input arrays", entry);
  size_t count = 0;
  if (hasten_status status = hasten_entry_num_tensors(module, entry, 0, &count))
    return status;
  args.assign(count, nullptr);
  std::vector<bool> used(numInputs, false);
  std::string known;
  size_t nextState = 0;
  for (size_t i = 0; i < count; ++i) {
    const char *input = hasten_signature_name(module, entry, 0, i);
    hasten_tensor_role role = HASTEN_ROLE_NONE;
    hasten_signature_role(module, entry, 0, i, &role);
    if (role == HASTEN_ROLE_SAMPLER_STATE) {
      args[i] = nextState < state.size() ? state[nextState++] : nullptr;
      continue;
    }
    known += (known.empty() ? "" : ", ") + std::string(input);
    for (size_t j = 0; j < numInputs; ++j) {
      if (!names[j] || std::strcmp(names[j], input) != 0)
        continue;
      if (args[i])
        return fail(HASTEN_ERROR_INVALID_ARGUMENT, "%s: input '%s' is given twice", entry,
                    input);
      args[i] = inputs[j];
      used[j] = true;
    }
    if (args[i])
      continue;
    if (role != HASTEN_ROLE_SAMPLER_NOISE)
      return fail(HASTEN_ERROR_INVALID_ARGUMENT, "%s: the conditioning input '%s' is not given",
                  entry, input);
    int64_t dims[16];
    int rank = hasten_signature_dims(module, entry, 0, i, dims, 16);
    if (rank < 0 || rank > 16 || hasten_signature_dtype(module, entry, 0, i) != HASTEN_F32)
      return fail(HASTEN_ERROR_INVALID_ARGUMENT, "%s: the noise input '%s' is not a static f32 "
                                                 "tensor",
                  entry, input);
    hasten_tensor *noise = nullptr;
    if (hasten_status status = hasten_tensor_create(HASTEN_F32, rank, dims, &noise))
      return status;
    drawn.emplace_back(noise);
    hasten_gaussian_noise(seed, streamBase + i, static_cast<float *>(hasten_tensor_data(noise)),
                          hasten_tensor_num_elements(noise));
    args[i] = noise;
  }
  for (size_t j = 0; j < numInputs; ++j)
    if (!used[j])
      return fail(HASTEN_ERROR_INVALID_ARGUMENT, "%s has no input named '%s' (its inputs: %s)",
                  entry, names[j] ? names[j] : "(null)", known.c_str());
  return HASTEN_OK;
}

/// `entry`, or the module's entry of `kind`.
hasten_status resolveEntry(hasten_module *module, const char *entry, hasten_entry_kind kind,
                           const char **name) {
  const char *what = kind == HASTEN_ENTRY_GENERATE ? "generate" : "sampler_stream";
  if (!entry) {
    if (hasten_find_entry(module, nullptr, kind, name) != HASTEN_OK)
      return fail(HASTEN_ERROR_NOT_FOUND,
                  "the module has no %s entry (compile the denoiser with hasten-compile "
                  "--sampler%s)",
                  what, kind == HASTEN_ENTRY_GENERATE ? "" : " --stream-batch=N");
    return HASTEN_OK;
  }
  hasten_entry_kind actual;
  if (hasten_status status = hasten_entry_info(module, entry, &actual, nullptr))
    return status;
  if (actual != kind)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "entry '%s' is not a %s entry", entry, what);
  *name = entry;
  return HASTEN_OK;
}

} // namespace

hasten_status hasten_generate_sample(hasten_module *module, const char *entry, uint64_t seed,
                                     const char *const *names, hasten_tensor *const *inputs,
                                     size_t num_inputs, hasten_tensor **sample,
                                     hasten_sample_stats *stats) {
  if (!module || !sample)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_generate_sample: null module or result");
  if (stats && stats->struct_size != sizeof(hasten_sample_stats))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "hasten_generate_sample: stats->struct_size is %zu, not %zu", stats->struct_size,
                sizeof(hasten_sample_stats));
  *sample = nullptr;
  const char *name = nullptr;
  if (hasten_status status = resolveEntry(module, entry, HASTEN_ENTRY_GENERATE, &name))
    return status;
  size_t outputs = 0;
  if (hasten_status status = hasten_entry_num_tensors(module, name, 1, &outputs))
    return status;
  if (outputs != 1)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "entry '%s' has %zu outputs, not the sample",
                name, outputs);
  std::vector<hasten_tensor *> args;
  std::vector<OwnedTensor> drawn;
  if (hasten_status status =
          bindInputs(module, name, seed, 0, names, inputs, num_inputs, {}, args, drawn))
    return status;
  auto start = std::chrono::steady_clock::now();
  if (hasten_status status = hasten_run(module, name, args.data(), args.size(), sample, 1))
    return status;
  if (stats) {
    stats->seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    stats->steps = hasten_entry_sampler_steps(module, name);
  }
  return HASTEN_OK;
}

struct hasten_sample_stream {
  hasten_module *module;
  std::string entry;
  uint64_t seed;
  int64_t depth = 0, pushed = 0;
  /// The frames in flight (and their conditioning), in the entry's order.
  std::vector<OwnedTensor> state;
};

hasten_status hasten_sample_stream_create(hasten_module *module, const char *entry,
                                          uint64_t seed, hasten_sample_stream **out) {
  if (!module || !out)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_sample_stream_create: null argument");
  *out = nullptr;
  const char *name = nullptr;
  if (hasten_status status = resolveEntry(module, entry, HASTEN_ENTRY_SAMPLER_STREAM, &name))
    return status;
  auto stream = std::make_unique<hasten_sample_stream>();
  stream->module = module;
  stream->entry = name;
  stream->seed = seed;
  size_t count = 0;
  hasten_entry_num_tensors(module, name, 0, &count);
  for (size_t i = 0; i < count; ++i) {
    hasten_tensor_role role = HASTEN_ROLE_NONE;
    hasten_signature_role(module, name, 0, i, &role);
    if (role != HASTEN_ROLE_SAMPLER_STATE)
      continue;
    int64_t dims[16];
    int rank = hasten_signature_dims(module, name, 0, i, dims, 16);
    hasten_tensor *state = nullptr;
    if (rank < 1 || rank > 16)
      return fail(HASTEN_ERROR_INVALID_ARGUMENT, "%s: state input %zu has no static shape",
                  name, i);
    if (hasten_status status =
            hasten_tensor_create(hasten_signature_dtype(module, name, 0, i), rank, dims, &state))
      return status;
    stream->state.emplace_back(state);
    stream->depth = dims[0] + 1;
  }
  if (stream->state.empty())
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "entry '%s' has no state inputs", name);
  *out = stream.release();
  return HASTEN_OK;
}

void hasten_sample_stream_free(hasten_sample_stream *stream) { delete stream; }

int64_t hasten_sample_stream_depth(const hasten_sample_stream *stream) {
  return stream ? stream->depth : 0;
}

hasten_status hasten_sample_stream_push(hasten_sample_stream *stream, const char *const *names,
                                        hasten_tensor *const *inputs, size_t num_inputs,
                                        hasten_tensor **sample) {
  if (!stream || !sample)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_sample_stream_push: null argument");
  *sample = nullptr;
  const char *entry = stream->entry.c_str();
  std::vector<hasten_tensor *> state, args;
  for (const OwnedTensor &t : stream->state)
    state.push_back(t.get());
  std::vector<OwnedTensor> drawn;
  if (hasten_status status =
          bindInputs(stream->module, entry, stream->seed, uint64_t(stream->pushed) * 65536,
                     names, inputs, num_inputs, state, args, drawn))
    return status;
  size_t count = 0;
  hasten_entry_num_tensors(stream->module, entry, 1, &count);
  if (count != stream->state.size() + 1)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "%s: expected the sample and %zu states out",
                entry, stream->state.size());
  std::vector<hasten_tensor *> outputs(count, nullptr);
  if (hasten_status status =
          hasten_run(stream->module, entry, args.data(), args.size(), outputs.data(), count))
    return status;
  // The entry's results: the finished frame, then the states in order.
  for (size_t k = 0; k < stream->state.size(); ++k)
    stream->state[k].reset(outputs[k + 1]);
  ++stream->pushed;
  if (stream->pushed >= stream->depth)
    *sample = outputs[0];
  else
    hasten_tensor_free(outputs[0]);
  return HASTEN_OK;
}
