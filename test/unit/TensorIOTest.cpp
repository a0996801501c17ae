//===- TensorIOTest.cpp - hostile .npy/.pb files and tensor shapes ---------===//
//
// Whatever a tensor file or a C API caller declares, the result is a tensor
// or an error naming the file: never an exception, a wrapped size, or an
// allocation the data cannot fill.
//
//===----------------------------------------------------------------------===//

#include "hasten/TensorIO.h"
#include "hasten/runtime.h"

#include <onnx/onnx_pb.h>

#include "gtest/gtest.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <string>

namespace {

/// A version-1 .npy file with this header text and `dataBytes` zero bytes.
std::string npy(const std::string &header, size_t dataBytes) {
  std::string file = std::string("\x93NUMPY\x01\x00", 8);
  file += char(header.size() & 0xff);
  file += char(header.size() >> 8);
  return file + header + std::string(dataBytes, '\0');
}

std::string parseError(const std::string &file) {
  std::string error;
  hasten_tensor *tensor = hasten::parseNpy(file, "x.npy", error);
  hasten_tensor_free(tensor);
  return tensor ? "" : error;
}

TEST(TensorIOTest, NpyRoundTripsThroughTheStrictParser) {
  std::string error;
  hasten_tensor *tensor = hasten::parseNpy(
      npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", 24), "a.npy", error);
  ASSERT_NE(tensor, nullptr) << error;
  EXPECT_EQ(hasten_tensor_rank(tensor), 2);
  EXPECT_EQ(hasten_tensor_dims(tensor)[1], 3);
  hasten_tensor_free(tensor);
  // numpy's spellings of a 1-D and a 0-D shape.
  for (const char *header : {"{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
                             "{\"descr\": \"<i8\", \"fortran_order\": False, \"shape\": (3L,)}"}) {
    hasten_tensor *t = hasten::parseNpy(npy(header, 24), "b.npy", error);
    EXPECT_NE(t, nullptr) << header << ": " << error;
    hasten_tensor_free(t);
  }
  hasten_tensor *scalar = hasten::parseNpy(
      npy("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", 8), "c.npy", error);
  ASSERT_NE(scalar, nullptr) << error;
  EXPECT_EQ(hasten_tensor_rank(scalar), 0);
  hasten_tensor_free(scalar);
}

TEST(TensorIOTest, MalformedNpyHeadersAreErrorsNotExceptions) {
  struct Case {
    std::string file, message;
  } cases[] = {
      {npy("{'descr': '<f4', 'fortran_order': False, 'shape': (abc, 4), }", 0),
       "malformed 'shape'"},
      {npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 0),
       "malformed 'shape'"},
      {npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }", 0), "malformed 'shape'"},
      {npy("{'descr': '<f4', 'shape': (3,), }", 12), "lacks 'descr', 'fortran_order' or 'shape'"},
      {npy("{'descr: '<f4', 'fortran_order': False, 'shape': (3,), }", 12), "malformed"},
      {npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 12),
       "repeated key 'descr'"},
      {npy("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (3,), }", 12),
       "malformed 'fortran_order'"},
      {npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), } trailing", 12),
       "text after its dict"},
      {npy("{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }", 24),
       "unsupported .npy dtype '<c8'"},
      {std::string("\x93NUMPY\x01\x00\xff\x7f{", 11), "truncated .npy header"},
      {std::string("\x93NUMPY\x09\x00\x10\x00", 10), "unsupported .npy format version 9"},
      {"not numpy at all", "not a .npy file"},
  };
  for (const Case &c : cases) {
    std::string error = parseError(c.file);
    EXPECT_NE(error.find(c.message), std::string::npos) << "got: " << error;
    EXPECT_EQ(error.rfind("x.npy: ", 0), 0u) << error;
  }
}

TEST(TensorIOTest, ShapesThatDoNotMatchTheDataAreRefusedBeforeAllocating) {
  // 2^62 + 3 rows of 4 floats: the element count wraps in 64 bits.
  EXPECT_NE(parseError(npy("{'descr': '<f4', 'fortran_order': False, "
                           "'shape': (4611686018427387907, 4), }", 116))
                .find("needs more than can be addressed"),
            std::string::npos);
  // 2^40 floats declared, 16 bytes present: refused without a 4 TiB calloc.
  EXPECT_NE(parseError(npy("{'descr': '<f4', 'fortran_order': False, "
                           "'shape': (1099511627776,), }", 16))
                .find(".npy data is 16 bytes, but its shape (1099511627776) of <f4 needs "
                      "4398046511104"),
            std::string::npos);
  // Data left over is as wrong as data missing.
  EXPECT_NE(parseError(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 12))
                .find("needs 8"),
            std::string::npos);

  onnx::TensorProto proto;
  proto.set_data_type(onnx::TensorProto::FLOAT);
  proto.add_dims(int64_t(1) << 40);
  proto.add_dims(int64_t(1) << 40);
  proto.set_raw_data(std::string(16, '\0'));
  std::string error;
  EXPECT_EQ(hasten::parsePb(proto.SerializeAsString(), "y.pb", error), nullptr);
  EXPECT_NE(error.find("y.pb: TensorProto holds 4 elements but its shape has more than can be "
                       "addressed"),
            std::string::npos)
      << error;
  EXPECT_EQ(hasten::parsePb("\xff\xff\xff", "z.pb", error), nullptr);
  EXPECT_NE(error.find("not a serialized ONNX TensorProto"), std::string::npos) << error;
}

TEST(TensorIOTest, OnlyRegularFilesOfBoundedSizeAreRead) {
  char dir[] = "/tmp/hasten-tensorio-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string fifo = std::string(dir) + "/pipe.npy", zero = std::string(dir) + "/zero.npy";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  ASSERT_EQ(symlink("/dev/zero", zero.c_str()), 0);
  std::string error;
  // Neither blocks nor reads without end.
  EXPECT_EQ(hasten::readTensorFile(fifo, error), nullptr);
  EXPECT_EQ(error, fifo + ": not a regular file");
  EXPECT_EQ(hasten::readTensorFile(zero, error), nullptr);
  EXPECT_EQ(error, zero + ": not a regular file");

  std::string big = std::string(dir) + "/big.npy";
  std::ofstream(big, std::ios::binary)
      << npy("{'descr': '<f4', 'fortran_order': False, 'shape': (256,), }", 1024);
  EXPECT_EQ(hasten::readTensorFile(big, error, /*maxBytes=*/512), nullptr);
  EXPECT_NE(error.find("more than the 512 this tensor can take"), std::string::npos) << error;
  hasten_tensor *tensor = hasten::readTensorFile(big, error, 4096);
  EXPECT_NE(tensor, nullptr) << error;
  hasten_tensor_free(tensor);
  for (const std::string &path : {fifo, zero, big})
    unlink(path.c_str());
  rmdir(dir);
}

TEST(TensorIOTest, TensorCreateRefusesShapesWhoseSizeOverflows) {
  int64_t huge[] = {int64_t(1) << 40, int64_t(1) << 40};
  hasten_tensor *tensor = nullptr;
  EXPECT_EQ(hasten_tensor_create(HASTEN_F32, 2, huge, &tensor), HASTEN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(tensor, nullptr);
  EXPECT_NE(std::string(hasten_last_error()).find("shape [1099511627776, 1099511627776] has more "
                                                  "bytes than can be addressed"),
            std::string::npos)
      << hasten_last_error();
  EXPECT_EQ(hasten_tensor_wrap(HASTEN_F32, 2, huge, huge, &tensor),
            HASTEN_ERROR_INVALID_ARGUMENT);
  // Empty tensors and ordinary ones are fine, zeroed and 64-byte aligned.
  int64_t empty[] = {0, int64_t(1) << 62};
  ASSERT_EQ(hasten_tensor_create(HASTEN_F32, 2, empty, &tensor), HASTEN_OK);
  EXPECT_EQ(hasten_tensor_size_bytes(tensor), 0u);
  hasten_tensor_free(tensor);
  int64_t small[] = {3, 5};
  ASSERT_EQ(hasten_tensor_create(HASTEN_F64, 2, small, &tensor), HASTEN_OK);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(hasten_tensor_data(tensor)) % 64, 0u);
  const char *bytes = static_cast<const char *>(hasten_tensor_data(tensor));
  EXPECT_TRUE(std::all_of(bytes, bytes + 120, [](char c) { return c == 0; }));
  hasten_tensor_free(tensor);
}

} // namespace
