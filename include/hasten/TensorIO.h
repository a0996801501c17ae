//===- TensorIO.h - .npy and ONNX TensorProto files for hasten tensors ------===//
//
// Reads and writes runtime tensors as numpy .npy files or serialized ONNX
// TensorProto (.pb) files, as the conformance data stores them. Used by
// hasten-run and the tests; deployed modules do not need it.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_TENSORIO_H
#define HASTEN_TENSORIO_H

#include "hasten/runtime.h"

#include <cstdint>
#include <string>
#include <string_view>

namespace hasten {

/// Reads `path` (.npy or .pb, by extension) into a new owned tensor. On
/// failure returns null and sets `error` to a message naming the file. Only
/// regular files are read, and none larger than `maxBytes` (0: no limit);
/// the data must match its header exactly.
hasten_tensor *readTensorFile(const std::string &path, std::string &error,
                              uint64_t maxBytes = 0);

/// The same for a file's bytes held in memory; `name` names it in errors.
hasten_tensor *parseNpy(std::string_view data, const std::string &name, std::string &error);
hasten_tensor *parsePb(std::string_view data, const std::string &name, std::string &error);

/// Writes `tensor` to `path` as .npy or .pb (by extension); `name` is the
/// TensorProto name. Returns false and sets `error` on failure.
bool writeTensorFile(const std::string &path, hasten_tensor *tensor,
                     const std::string &name, std::string &error);

} // namespace hasten

#endif // HASTEN_TENSORIO_H
