//===- fuzz_tensor_files.cpp - libFuzzer target: .npy and .pb readers -----===//
//
// Any bytes given to the tensor file parsers end in a tensor that matches
// its header or in an error; never in a crash, a sanitizer report, an
// exception or an allocation the input cannot back. The same bytes read as
// a SequenceProto, an OptionalProto and a TensorProto of strings give parts
// that describe a valid sequence or string tensor (or an error).
//
//===----------------------------------------------------------------------===//

#include "hasten/TensorIO.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char *>(data), size);
  for (bool npy : {true, false}) {
    std::string error;
    hasten_tensor *tensor = npy ? hasten::parseNpy(bytes, "input.npy", error)
                                : hasten::parsePb(bytes, "input.pb", error);
    if (!tensor) {
      if (error.empty()) {
        std::fprintf(stderr, "parser failed without a message\n");
        std::abort();
      }
      continue;
    }
    // Nothing was allocated that the input does not back: a .npy holds its
    // bytes, a .pb at least one byte per element (a varint or more).
    size_t backed = npy ? hasten_tensor_size_bytes(tensor) : hasten_tensor_num_elements(tensor);
    if (backed > size) {
      std::fprintf(stderr, "a tensor of %zu %s from %zu bytes of input\n", backed,
                   npy ? "bytes" : "elements", size);
      std::abort();
    }
    hasten_tensor_free(tensor);
  }
  for (int kind = 0; kind < 4; ++kind) {
    hasten::ValueLayout layout;
    layout.strings = kind == 3;
    layout.sequence = kind < 3 && kind != 1;
    layout.optional = kind == 1 || kind == 2;
    layout.dtype = HASTEN_F32;
    layout.placeholderDims = {3};
    std::vector<hasten_tensor *> parts;
    std::string error;
    if (!hasten::parseValuePb(bytes, layout, "input.pb", parts, error)) {
      if (error.empty() || !parts.empty()) {
        std::fprintf(stderr, "value parser failed without a message or left parts\n");
        std::abort();
      }
      continue;
    }
    if (parts.size() != layout.numParts()) {
      std::fprintf(stderr, "%zu parts for a layout of %zu\n", parts.size(), layout.numParts());
      std::abort();
    }
    if (layout.sequence) {
      // The shape table's rows add up to the data, as hasten_run checks.
      hasten_tensor *data = parts[parts.size() - 2], *shapes = parts.back();
      const auto *table = static_cast<const int64_t *>(hasten_tensor_data(shapes));
      int64_t count = hasten_tensor_dims(shapes)[0], width = hasten_tensor_dims(shapes)[1];
      uint64_t total = 0;
      for (int64_t row = 0; row < count; ++row) {
        uint64_t n = 1;
        for (int64_t d = 1; d <= table[row * width]; ++d)
          n *= uint64_t(table[row * width + d]);
        total += n;
      }
      if (total != hasten_tensor_num_elements(data) || uint64_t(count * width) > 17 * size + 33) {
        std::fprintf(stderr, "a shape table that does not describe its data\n");
        std::abort();
      }
    }
    if (layout.strings) {
      // Every length fits its row, and the rows are not padded far beyond
      // the bytes the input holds.
      hasten_tensor *bytes = parts[0], *lengths = parts[1];
      int64_t width = hasten_tensor_dims(bytes)[hasten_tensor_rank(bytes) - 1];
      const auto *length = static_cast<const int64_t *>(hasten_tensor_data(lengths));
      for (size_t i = 0; i < hasten_tensor_num_elements(lengths); ++i)
        if (length[i] < 0 || length[i] > width) {
          std::fprintf(stderr, "string %zu of length %lld in rows of %lld\n", i,
                       (long long)length[i], (long long)width);
          std::abort();
        }
      if (hasten_tensor_size_bytes(bytes) > 64 * (size + hasten_tensor_num_elements(lengths)) +
                                                (1 << 20)) {
        std::fprintf(stderr, "%zu bytes of rows from %zu bytes of input\n",
                     hasten_tensor_size_bytes(bytes), size);
        std::abort();
      }
    }
    for (hasten_tensor *t : parts)
      hasten_tensor_free(t);
  }
  return 0;
}
