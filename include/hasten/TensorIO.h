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
#include <vector>

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

/// How one ONNX value crosses a module's ABI (see hasten_tensor_role): a
/// tensor, a sequence (data, shape table), or an optional of either
/// (presence flag first).
struct ValueLayout {
  bool optional = false;
  bool sequence = false;
  /// A string tensor: its bytes ([shape..., width] u8) and lengths.
  bool strings = false;
  /// The tensor's, or the sequence's elements', type.
  hasten_dtype dtype = HASTEN_F32;
  /// An absent optional tensor's placeholder shape (-1 read as 0).
  std::vector<int64_t> placeholderDims;
  /// The number of ABI tensors the value is.
  size_t numParts() const { return (optional ? 1 : 0) + (sequence || strings ? 2 : 1); }
};

/// Reads `path` as `layout` says: a tensor file as readTensorFile does; a
/// sequence from a .pb SequenceProto, an optional from a .pb OptionalProto,
/// strings from a .pb TensorProto of type STRING.
/// On success `parts` holds the owned ABI tensors in signature order.
bool readValueFile(const std::string &path, const ValueLayout &layout,
                   std::vector<hasten_tensor *> &parts, std::string &error,
                   uint64_t maxBytes = 0);

/// The same for a .pb file's bytes held in memory; `name` names it in
/// errors.
bool parseValuePb(std::string_view data, const ValueLayout &layout, const std::string &name,
                  std::vector<hasten_tensor *> &parts, std::string &error);

/// Writes the value made of `parts` (layout.numParts() tensors) to `path`:
/// as writeTensorFile does for a tensor, else as a .pb SequenceProto or
/// OptionalProto named `name`, strings as a STRING TensorProto.
bool writeValueFile(const std::string &path, const ValueLayout &layout,
                    hasten_tensor *const *parts, const std::string &name, std::string &error);

} // namespace hasten

#endif // HASTEN_TENSORIO_H
