//===- fuzz_module_file.cpp - libFuzzer target: reading a module's manifest -===//
//
// Any bytes given as a module file end in a verified manifest or in an
// error, before any loader would see them: the ELF headers, the dynamic
// symbol table, the manifest's offset and size and the FlatBuffers bytes are
// all checked against the file.
//
//===----------------------------------------------------------------------===//

#include "ModuleFile.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  hasten::runtime::FileReader reader;
  reader.size = size;
  reader.read = [&](uint64_t offset, uint64_t length, void *out) {
    if (offset > size || length > size - offset)
      return false;
    if (length)
      std::memcpy(out, data + offset, length);
    return true;
  };
  std::vector<uint8_t> manifest;
  std::string error;
  hasten::runtime::EmbeddedWeights weights;
  hasten_status status = hasten::runtime::readModuleManifest(reader, manifest, weights, error);
  if (status != HASTEN_OK && error.empty()) {
    std::fprintf(stderr, "refused without a message\n");
    std::abort();
  }
  if (status == HASTEN_OK && manifest.size() > size) {
    std::fprintf(stderr, "a %zu-byte manifest from a %zu-byte file\n", manifest.size(), size);
    std::abort();
  }
  return 0;
}
