//===- CudaBundleTest.cpp - the device code bundle, written and read ------===//
//
// The runtime reads a bundle the compiler wrote to choose what the driver
// loads: the cubin of the device's architecture family, else PTX it
// compiles; and it must refuse a damaged bundle rather than hand the
// driver a pointer past its end.
//
//===----------------------------------------------------------------------===//

#include "hasten/CudaBundle.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace hasten::cuda;

namespace {

const std::string kPtx70 = std::string(".target sm_70 ...") + '\0';
const std::string kPtx80 = std::string(".target sm_80 ...") + '\0';
const std::string kCubin75 = "\x7f" "ELF cubin 75";
const std::string kCubin80 = "\x7f" "ELF cubin 80";
const std::string kCubin86 = "\x7f" "ELF cubin 86";
const std::string kCubin90 = "\x7f" "ELF cubin 90";

Image image(ImageKind kind, uint32_t arch, const std::string &bytes) {
  return {kind, arch, reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size()};
}

std::vector<uint8_t> sample() {
  return writeBundle({image(ImageKind::Cubin, 75, kCubin75), image(ImageKind::Cubin, 80, kCubin80),
                      image(ImageKind::Cubin, 86, kCubin86), image(ImageKind::Cubin, 90, kCubin90),
                      image(ImageKind::Ptx, 70, kPtx70), image(ImageKind::Ptx, 80, kPtx80)});
}

std::string bytesOf(const Image *chosen) {
  return chosen ? std::string(reinterpret_cast<const char *>(chosen->data), chosen->size) : "none";
}

TEST(CudaBundleTest, RoundTrips) {
  std::vector<uint8_t> bundle = sample();
  std::vector<Image> images;
  std::string error;
  ASSERT_TRUE(readBundle(bundle.data(), bundle.size(), images, error)) << error;
  ASSERT_EQ(images.size(), 6u);
  EXPECT_EQ(images[0].kind, ImageKind::Cubin);
  EXPECT_EQ(images[0].arch, 75u);
  EXPECT_EQ(bytesOf(&images[0]), kCubin75);
  EXPECT_EQ(images[5].kind, ImageKind::Ptx);
  EXPECT_EQ(images[5].arch, 80u);
  EXPECT_EQ(bytesOf(&images[5]), kPtx80);
}

TEST(CudaBundleTest, ChoosesTheDevicesCubinElsePtx) {
  std::vector<uint8_t> bundle = sample();
  std::vector<Image> images;
  std::string error;
  ASSERT_TRUE(readBundle(bundle.data(), bundle.size(), images, error)) << error;
  // Exact matches.
  EXPECT_EQ(bytesOf(chooseImage(images, 75)), kCubin75);
  EXPECT_EQ(bytesOf(chooseImage(images, 80)), kCubin80);
  EXPECT_EQ(bytesOf(chooseImage(images, 90)), kCubin90);
  // A later minor of a major runs its highest earlier cubin (8.9: sm_86).
  EXPECT_EQ(bytesOf(chooseImage(images, 89)), kCubin86);
  EXPECT_EQ(bytesOf(chooseImage(images, 87)), kCubin86);
  // Volta has no cubin (CUDA 13's ptxas does not assemble it): the PTX.
  EXPECT_EQ(bytesOf(chooseImage(images, 70)), kPtx70);
  // A newer major than any cubin: the newest PTX not above it.
  EXPECT_EQ(bytesOf(chooseImage(images, 100)), kPtx80);
  EXPECT_EQ(bytesOf(chooseImage(images, 120)), kPtx80);
  // Older than everything: nothing to load.
  EXPECT_EQ(chooseImage(images, 61), nullptr);
}

TEST(CudaBundleTest, RefusesDamage) {
  std::vector<uint8_t> good = sample();
  std::vector<Image> images;
  std::string error;
  // Another blob.
  std::vector<uint8_t> foreign(good);
  foreign[0] = 'X';
  EXPECT_FALSE(readBundle(foreign.data(), foreign.size(), images, error));
  EXPECT_EQ(error, "not a hasten CUDA bundle");
  // Another format version.
  std::vector<uint8_t> version(good);
  version[8] = 2;
  EXPECT_FALSE(readBundle(version.data(), version.size(), images, error));
  EXPECT_NE(error.find("CUDA bundle format 2"), std::string::npos) << error;
  // Cut short: the table, then an image.
  EXPECT_FALSE(readBundle(good.data(), 40, images, error));
  EXPECT_FALSE(readBundle(good.data(), good.size() - 3, images, error));
  EXPECT_NE(error.find("is damaged"), std::string::npos) << error;
  // An image size that runs past the end.
  std::vector<uint8_t> size(good);
  size[16 + 16] = 0xff;
  size[16 + 17] = 0xff;
  EXPECT_FALSE(readBundle(size.data(), size.size(), images, error));
  // PTX without its terminating NUL (the driver reads it as a C string).
  std::vector<uint8_t> unterminated(good);
  unterminated.back() = '.';
  EXPECT_FALSE(readBundle(unterminated.data(), unterminated.size(), images, error));
  EXPECT_TRUE(images.empty());
}

} // namespace

namespace {

TEST(CudaBundleTest, ReadsArchitectureNames) {
  EXPECT_EQ(archNumber("sm_70"), 70u);
  EXPECT_EQ(archNumber("sm_120"), 120u);
  EXPECT_EQ(archNumber("sm_"), std::nullopt);
  EXPECT_EQ(archNumber("sm_8x"), std::nullopt);
  EXPECT_EQ(archNumber("compute_80"), std::nullopt);
  EXPECT_EQ(archNumber("volta"), std::nullopt);
}

} // namespace
