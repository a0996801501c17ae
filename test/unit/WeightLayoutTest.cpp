//===- WeightLayoutTest.cpp - the packing helpers against the hardware ----===//
//
// WeightLayout.h converts f16 in integer arithmetic (the compiler runs on any
// x86-64); these tests hold it to the compiler's own _Float16 conversions,
// which are IEEE round-to-nearest-even.
//
//===----------------------------------------------------------------------===//

#include "hasten/WeightLayout.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

using namespace hasten::abi;

namespace {

uint16_t referenceF16(float value) {
  _Float16 half = static_cast<_Float16>(value);
  uint16_t bits;
  std::memcpy(&bits, &half, 2);
  return bits;
}

float asFloat(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

TEST(WeightLayoutTest, EveryHalfWidensAsTheHardwareDoes) {
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    _Float16 half;
    uint16_t h = uint16_t(bits);
    std::memcpy(&half, &h, 2);
    float expected = static_cast<float>(half), actual = fromF16(h);
    if (std::isnan(expected)) {
      ASSERT_TRUE(std::isnan(actual)) << "half 0x" << std::hex << bits;
      continue;
    }
    uint32_t e, a;
    std::memcpy(&e, &expected, 4);
    std::memcpy(&a, &actual, 4);
    ASSERT_EQ(e, a) << "half 0x" << std::hex << bits;
  }
}

TEST(WeightLayoutTest, FloatsRoundToHalfAsTheHardwareDoes) {
  // Every 251st float, and every float near the boundaries where the
  // rounding changes: half subnormals, the normal range's ends, ties.
  auto check = [](uint32_t bits) {
    float value = asFloat(bits);
    if (std::isnan(value))
      return;
    ASSERT_EQ(toF16(value), referenceF16(value)) << "float 0x" << std::hex << bits;
  };
  for (uint64_t bits = 0; bits < (1ull << 32); bits += 251)
    check(uint32_t(bits));
  for (float edge : {5.9604645e-8f, 6.1035156e-5f, 65504.0f, 65520.0f, 1.0f, 2048.0f})
    for (int sign = 0; sign < 2; ++sign) {
      uint32_t bits;
      float v = sign ? -edge : edge;
      std::memcpy(&bits, &v, 4);
      for (uint32_t d = 0; d < 20000; ++d) {
        check(bits + d);
        check(bits - d);
      }
    }
  EXPECT_EQ(toF16(INFINITY), 0x7c00);
  EXPECT_EQ(toF16(-INFINITY), 0xfc00);
  EXPECT_TRUE(std::isnan(fromF16(toF16(NAN))));
}

} // namespace
