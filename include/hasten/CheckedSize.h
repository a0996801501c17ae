//===- hasten/CheckedSize.h - tensor sizes from untrusted dimensions ------===//
//
// Every place that turns dimensions it did not compute itself (ONNX files,
// .npy/.pb headers, C API callers, manifests) into an element or byte count
// goes through these, so that a shape like [4, 2^62 + 3] is refused instead
// of wrapping to a small size that passes a later check. Header-only: the
// runtime links no compiler code.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_CHECKEDSIZE_H
#define HASTEN_CHECKEDSIZE_H

#include <cstddef>
#include <cstdint>
#include <optional>

namespace hasten {

/// The largest byte size hasten accepts for one tensor: what a signed 64-bit
/// offset can address. Real limits (memory) come later and fail cleanly.
constexpr uint64_t kMaxTensorBytes = uint64_t(INT64_MAX);

/// The element count of a shape: nullopt when a dimension is negative or the
/// product does not fit in int64.
inline std::optional<uint64_t> checkedElementCount(const int64_t *dims, size_t rank) {
  uint64_t count = 1;
  for (size_t d = 0; d < rank; ++d) {
    if (dims[d] < 0 || __builtin_mul_overflow(count, uint64_t(dims[d]), &count) ||
        count > uint64_t(INT64_MAX))
      return std::nullopt;
  }
  return count;
}

/// The byte size of a shape of `elementBytes`-byte elements, with the same
/// checks; nullopt as well when it exceeds kMaxTensorBytes.
inline std::optional<uint64_t> checkedByteSize(const int64_t *dims, size_t rank,
                                               uint64_t elementBytes) {
  std::optional<uint64_t> count = checkedElementCount(dims, rank);
  uint64_t bytes;
  if (!count || __builtin_mul_overflow(*count, elementBytes, &bytes) || bytes > kMaxTensorBytes)
    return std::nullopt;
  return bytes;
}

} // namespace hasten

#endif // HASTEN_CHECKEDSIZE_H
