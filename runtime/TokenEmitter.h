//===- TokenEmitter.h - what plain and speculative generation share -*- C++ -*-===//
//
// Both hand generated tokens to the caller the same way (the output array,
// the callback, stop tokens, max_new_tokens, the timing stats) and accept
// the same option structs; this keeps the two in step.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_RUNTIME_TOKENEMITTER_H
#define HASTEN_RUNTIME_TOKENEMITTER_H

#include "RuntimeInternal.h"
#include "hasten/runtime.h"

#include <chrono>
#include <cmath>

namespace hasten::runtime {

inline double seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// Checks the option and stats structs a generation call was given (their
/// sizes, then the option values), naming `caller`; resets `stats`.
inline hasten_status checkGenerateArguments(const char *caller,
                                            const hasten_generate_options *options,
                                            hasten_generate_stats *stats) {
  if (options && options->struct_size < sizeof(hasten_generate_options))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "%s: options->struct_size is %zu, expected %zu (initialize the options with "
                "hasten_generate_options_init)",
                caller, options->struct_size, sizeof(hasten_generate_options));
  if (stats && stats->struct_size < sizeof(hasten_generate_stats))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "%s: stats->struct_size is %zu, expected %zu (set it to "
                "sizeof(hasten_generate_stats))",
                caller, stats->struct_size, sizeof(hasten_generate_stats));
  if (stats) {
    *stats = hasten_generate_stats{};
    stats->struct_size = sizeof(*stats);
  }
  if (options && (options->max_new_tokens < 0 || options->top_k < 0 ||
                  options->top_p < 0.0f || std::isnan(options->temperature)))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "%s: max_new_tokens, top_k and top_p must not be negative, and temperature "
                "must be a number",
                caller);
  return HASTEN_OK;
}

/// Hands generated tokens to the caller: into `generated`, to the callback,
/// checked against the stop tokens and max_new_tokens, with the first
/// token's time and the decode time in `stats`.
struct TokenEmitter {
  const hasten_generate_options &options;
  int64_t *generated;
  hasten_generate_stats &stats;
  double start = seconds(), decodeStart = 0.0;

  /// Whether generation ends with this token.
  bool emit(int64_t token) {
    if (generated)
      generated[stats.generated_tokens] = token;
    if (++stats.generated_tokens == 1) {
      stats.time_to_first_token_seconds = seconds() - start;
      decodeStart = seconds();
    }
    bool stop = options.on_token && options.on_token(token, options.user_data);
    for (size_t s = 0; s < options.num_stop_tokens; ++s)
      if (options.stop_tokens[s] == token) {
        stats.stopped_by_token = 1;
        stop = true;
      }
    return stop || stats.generated_tokens == options.max_new_tokens;
  }

  /// Records the decode time and returns `status`.
  hasten_status finish(hasten_status status) {
    if (stats.generated_tokens > 0)
      stats.decode_seconds = seconds() - decodeStart;
    return status;
  }
};

} // namespace hasten::runtime

#endif // HASTEN_RUNTIME_TOKENEMITTER_H
