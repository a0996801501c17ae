/*===- hasten/CudaBundle.h - a CUDA module's device code -----------------===*
 *
 * The device code of one GPU module of a CUDA build: cubins for the
 * architectures ptxas assembled and the PTX they came from, in one blob
 * that the compiler embeds and the runtime reads when it first launches one
 * of the module's kernels. Header-only: the compiler writes it, the runtime
 * (which links no LLVM) reads it.
 *
 *   offset 0   "HSTNCUDA" (8 bytes)
 *   8          u32 format version (kCudaBundleVersion)
 *   12         u32 image count
 *   16         count x { u32 kind (0 cubin, 1 PTX), u32 arch (80 = sm_80),
 *                        u64 offset, u64 size } (24 bytes each)
 *              the images' bytes (PTX with its terminating NUL)
 *
 * Little-endian, as every host the runtime supports.
 *
 *===----------------------------------------------------------------------===*/

#ifndef HASTEN_CUDABUNDLE_H
#define HASTEN_CUDABUNDLE_H

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hasten::cuda {

constexpr char kCudaBundleMagic[8] = {'H', 'S', 'T', 'N', 'C', 'U', 'D', 'A'};
constexpr uint32_t kCudaBundleVersion = 1;

enum class ImageKind : uint32_t { Cubin = 0, Ptx = 1 };

/// The oldest architecture CUDA 13's ptxas assembles; older ones (Volta)
/// get PTX only.
constexpr uint32_t kOldestCubinArch = 75;

/// 80 for "sm_80"; none for anything but "sm_" and digits.
inline std::optional<uint32_t> archNumber(std::string_view name) {
  if (name.size() < 4 || name.size() > 10 || name.substr(0, 3) != "sm_")
    return std::nullopt;
  uint32_t number = 0;
  for (char c : name.substr(3)) {
    if (c < '0' || c > '9')
      return std::nullopt;
    number = number * 10 + uint32_t(c - '0');
  }
  return number;
}

struct Image {
  ImageKind kind;
  /// The architecture as a number: 80 for sm_80 (cubin) or compute_80 (PTX).
  uint32_t arch;
  const uint8_t *data;
  uint64_t size;
};

inline void appendBytes(std::vector<uint8_t> &out, const void *data, size_t size) {
  const auto *bytes = static_cast<const uint8_t *>(data);
  out.insert(out.end(), bytes, bytes + size);
}

/// The bundle of `images` (their data copied in).
inline std::vector<uint8_t> writeBundle(const std::vector<Image> &images) {
  std::vector<uint8_t> out;
  appendBytes(out, kCudaBundleMagic, 8);
  uint32_t version = kCudaBundleVersion, count = uint32_t(images.size());
  appendBytes(out, &version, 4);
  appendBytes(out, &count, 4);
  uint64_t offset = 16 + 24 * uint64_t(images.size());
  for (const Image &image : images) {
    uint32_t kind = uint32_t(image.kind);
    appendBytes(out, &kind, 4);
    appendBytes(out, &image.arch, 4);
    appendBytes(out, &offset, 8);
    appendBytes(out, &image.size, 8);
    offset += image.size;
  }
  for (const Image &image : images)
    appendBytes(out, image.data, image.size);
  return out;
}

/// The images of a bundle (pointing into `data`), or false (and none) with
/// `error` saying what is wrong: a blob from another tool or a damaged file must
/// not send the driver reading past its end.
inline bool readBundle(const uint8_t *data, uint64_t size, std::vector<Image> &images,
                       std::string &error) {
  images.clear();
  if (size < 16 || std::memcmp(data, kCudaBundleMagic, 8) != 0) {
    error = "not a hasten CUDA bundle";
    return false;
  }
  uint32_t version, count;
  std::memcpy(&version, data + 8, 4);
  std::memcpy(&count, data + 12, 4);
  if (version != kCudaBundleVersion) {
    error = "CUDA bundle format " + std::to_string(version) + ", this runtime reads " +
            std::to_string(kCudaBundleVersion);
    return false;
  }
  if (count == 0 || count > 64 || 16 + 24 * uint64_t(count) > size) {
    error = "CUDA bundle with a damaged image table";
    return false;
  }
  for (uint32_t i = 0; i < count; ++i) {
    const uint8_t *entry = data + 16 + 24 * uint64_t(i);
    uint32_t kind, arch;
    uint64_t offset, length;
    std::memcpy(&kind, entry, 4);
    std::memcpy(&arch, entry + 4, 4);
    std::memcpy(&offset, entry + 8, 8);
    std::memcpy(&length, entry + 16, 8);
    if (kind > 1 || offset > size || length > size - offset || length == 0 ||
        (kind == uint32_t(ImageKind::Ptx) && data[offset + length - 1] != 0)) {
      error = "CUDA bundle image " + std::to_string(i) + " is damaged";
      images.clear();
      return false;
    }
    images.push_back({ImageKind(kind), arch, data + offset, length});
  }
  return true;
}

/// The image to load on a device of compute capability `arch` (86 for
/// 8.6): a cubin of the same major version and the highest minor not above
/// the device's (cubins run on later minors of their major), else the PTX
/// of the highest architecture not above the device's, which the driver
/// compiles. Null when neither exists (a device older than the module).
inline const Image *chooseImage(const std::vector<Image> &images, uint32_t arch) {
  const Image *best = nullptr;
  for (const Image &image : images)
    if (image.kind == ImageKind::Cubin && image.arch / 10 == arch / 10 && image.arch <= arch &&
        (!best || image.arch > best->arch))
      best = &image;
  if (best)
    return best;
  for (const Image &image : images)
    if (image.kind == ImageKind::Ptx && image.arch <= arch && (!best || image.arch > best->arch))
      best = &image;
  return best;
}

} // namespace hasten::cuda

#endif // HASTEN_CUDABUNDLE_H
