//===- ModuleFile.h - a module's manifest, read from the file -------------===//
//
// The dynamic loader trusts the file it maps: a damaged header or a manifest
// size patched to point past the data crashes it or the first read. So the
// runtime reads the manifest from the file itself, checks every offset and
// size it follows against the file, and verifies the bytes before dlopen
// sees the file at all.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_RUNTIME_MODULEFILE_H
#define HASTEN_RUNTIME_MODULEFILE_H

#include "hasten/runtime.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace hasten::runtime {

/// Reads `length` bytes at `offset` of a file of `size` bytes into `out`;
/// false when the range is not inside the file or the read fails.
struct FileReader {
  uint64_t size = 0;
  std::function<bool(uint64_t offset, uint64_t length, void *out)> read;
};

/// Where a module file's embedded weight segment is (size 0: none).
struct EmbeddedWeights {
  uint64_t offset = 0, size = 0;
};

/// Checks that the file is a complete x86-64 ELF shared object, finds the
/// manifest symbols in its dynamic symbol table, and returns the manifest's
/// bytes once the FlatBuffers verifier and the structural checks accept
/// them, with the place of the embedded weight segment when the manifest
/// says there is one. On failure `error` says why, without the path (the
/// caller adds it).
hasten_status readModuleManifest(const FileReader &file, std::vector<uint8_t> &manifest,
                                 EmbeddedWeights &weights, std::string &error);

/// The checks on manifest bytes alone: identifier, FlatBuffers verifier,
/// and every entry complete (name, symbol, signatures).
hasten_status checkManifestBytes(const std::vector<uint8_t> &manifest, std::string &error);

} // namespace hasten::runtime

#endif // HASTEN_RUNTIME_MODULEFILE_H
