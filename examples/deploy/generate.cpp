// Generates greedily from a decoder compiled by hasten-compile: the prompt's
// token ids come as arguments, the generated ids are printed on one line.
#include <hasten/runtime.hpp>

#include <cstdio>
#include <cstdlib>

int main(int argc, char **argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s decoder.so NEW_TOKENS PROMPT_ID...\n", argv[0]);
    return 2;
  }
  hasten::Module model;
  hasten::Sequence sequence;
  std::string error;
  if (!model.load(argv[1], &error) || !model.prepare(&error) ||
      !sequence.create(model, nullptr, &error)) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
    return 1;
  }
  std::vector<int64_t> prompt;
  for (int i = 3; i < argc; ++i)
    prompt.push_back(std::atoll(argv[i]));
  hasten::GenerateOptions options;
  options.max_new_tokens = std::atoll(argv[2]);
  std::vector<int64_t> tokens = sequence.generate(prompt, options, nullptr, &error);
  if (!error.empty()) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
    return 1;
  }
  for (int64_t token : tokens)
    std::printf("%lld ", static_cast<long long>(token));
  std::printf("\n");
  return 0;
}
