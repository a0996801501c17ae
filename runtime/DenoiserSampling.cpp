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

hasten_status hasten_generate_sample(hasten_module *module, const char *entry, uint64_t seed,
                                     const char *const *names, hasten_tensor *const *inputs,
                                     size_t num_inputs, hasten_tensor **sample,
                                     hasten_sample_stats *stats) {
  if (!module || !sample || (num_inputs && (!names || !inputs)))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "hasten_generate_sample: null module, result, or input arrays");
  if (stats && stats->struct_size != sizeof(hasten_sample_stats))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "hasten_generate_sample: stats->struct_size is %zu, not %zu", stats->struct_size,
                sizeof(hasten_sample_stats));
  *sample = nullptr;
  const char *name = entry;
  if (!name) {
    if (hasten_find_entry(module, nullptr, HASTEN_ENTRY_GENERATE, &name) != HASTEN_OK)
      return fail(HASTEN_ERROR_NOT_FOUND, "the module has no generate entry (compile the "
                                          "denoiser with hasten-compile --sampler)");
  } else {
    hasten_entry_kind kind;
    if (hasten_status status = hasten_entry_info(module, name, &kind, nullptr))
      return status;
    if (kind != HASTEN_ENTRY_GENERATE)
      return fail(HASTEN_ERROR_INVALID_ARGUMENT, "entry '%s' is not a generate entry", name);
  }
  size_t count = 0, outputs = 0;
  if (hasten_status status = hasten_entry_num_tensors(module, name, 0, &count))
    return status;
  if (hasten_status status = hasten_entry_num_tensors(module, name, 1, &outputs))
    return status;
  if (outputs != 1)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "entry '%s' has %zu outputs, not the sample",
                name, outputs);

  std::vector<hasten_tensor *> args(count, nullptr);
  std::vector<OwnedTensor> drawn;
  std::vector<bool> used(num_inputs, false);
  std::string known;
  for (size_t i = 0; i < count; ++i) {
    const char *input = hasten_signature_name(module, name, 0, i);
    known += (known.empty() ? "" : ", ") + std::string(input);
    for (size_t j = 0; j < num_inputs; ++j) {
      if (!names[j] || std::strcmp(names[j], input) != 0)
        continue;
      if (args[i])
        return fail(HASTEN_ERROR_INVALID_ARGUMENT, "generate: input '%s' is given twice",
                    input);
      args[i] = inputs[j];
      used[j] = true;
    }
    if (args[i])
      continue;
    hasten_tensor_role role = HASTEN_ROLE_NONE;
    hasten_signature_role(module, name, 0, i, &role);
    if (role != HASTEN_ROLE_SAMPLER_NOISE)
      return fail(HASTEN_ERROR_INVALID_ARGUMENT, "generate: the conditioning input '%s' is "
                                                 "not given",
                  input);
    int64_t dims[16];
    int rank = hasten_signature_dims(module, name, 0, i, dims, 16);
    if (rank < 0 || rank > 16 || hasten_signature_dtype(module, name, 0, i) != HASTEN_F32)
      return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                  "generate: the noise input '%s' is not a static f32 tensor", input);
    hasten_tensor *noise = nullptr;
    if (hasten_status status = hasten_tensor_create(HASTEN_F32, rank, dims, &noise))
      return status;
    drawn.emplace_back(noise);
    hasten_gaussian_noise(seed, i, static_cast<float *>(hasten_tensor_data(noise)),
                          hasten_tensor_num_elements(noise));
    args[i] = noise;
  }
  for (size_t j = 0; j < num_inputs; ++j)
    if (!used[j])
      return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                  "generate has no input named '%s' (its inputs: %s)",
                  names[j] ? names[j] : "(null)", known.c_str());

  auto start = std::chrono::steady_clock::now();
  if (hasten_status status = hasten_run(module, name, args.data(), count, sample, 1))
    return status;
  if (stats) {
    stats->seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    stats->steps = hasten_entry_sampler_steps(module, name);
  }
  return HASTEN_OK;
}
