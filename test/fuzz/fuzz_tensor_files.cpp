//===- fuzz_tensor_files.cpp - libFuzzer target: .npy and .pb readers -----===//
//
// Any bytes given to the tensor file parsers end in a tensor that matches
// its header or in an error; never in a crash, a sanitizer report, an
// exception or an allocation the input cannot back.
//
//===----------------------------------------------------------------------===//

#include "hasten/TensorIO.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

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
  return 0;
}
