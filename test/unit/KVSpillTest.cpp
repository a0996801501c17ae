//===- KVSpillTest.cpp - KV pools that spill to host memory ---------------===//
//
// A CUDA module's paged pool with a device budget
// (hasten_module_set_kv_device_tokens) keeps a sequence's newest blocks in
// device memory and its older ones in pinned host memory mapped into the
// same device range. These tests follow the placement block by block on a
// tiny decoder (test/models/make_decoder.py) against the stand-in driver,
// whose mapping granularity is set to one block here: which blocks are
// where after appends, forks and frees, that shared blocks never move, and
// the refusals. Kernels are not executed (FAKE_CUDA_EXECUTE=0): placement
// does not depend on what they compute; tools/cuda-target.test checks that
// a spilled cache generates the CPU's tokens.
//
//===----------------------------------------------------------------------===//

#include "CompileForTest.h"
#include "hasten/runtime.hpp"

#include "llvm/Support/FileSystem.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace {

class KVSpillTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string fake = std::string(HASTEN_RUNTIME_DIR) + "/libhasten_fake_cuda.so";
    setenv("HASTEN_CUDA_DRIVER", fake.c_str(), 1);
    setenv("HASTEN_CUBLASLT", fake.c_str(), 1);
    setenv("FAKE_CUDA_EXECUTE", "0", 1);
    // One 16-token block of gpt2-tiny (2 layers x K,V x 4 heads x 16 x f32).
    setenv("FAKE_CUDA_GRANULE", "16384", 1);
    llvm::SmallString<128> dir;
    ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("hasten-spill", dir));
    directory = std::string(dir);
    std::string onnxPath = directory + "/gpt2.onnx";
    ASSERT_TRUE(hasten::test::makeTestDecoder("gpt2-tiny", onnxPath));
    hasten::CompileOptions options;
    options.kv.capacity = 128;
    options.kv.blockSize = 16;
    options.target = "cuda";
    options.cuda.gpus = {"sm_80"};
    std::string diagnostics =
        hasten::test::compileForTest(onnxPath, directory + "/gpt2.so", options);
    ASSERT_TRUE(diagnostics.empty()) << diagnostics;
    std::string error;
    ASSERT_TRUE(module.load(directory + "/gpt2.so", &error)) << error;
    ASSERT_EQ(hasten_module_kv_bytes_per_token(module.get()), 1024u);
  }
  void TearDown() override { llvm::sys::fs::remove_directories(directory); }

  hasten_kv_placement placementOf(const hasten::KVPool &pool) {
    hasten_kv_placement p{};
    p.struct_size = sizeof(p);
    EXPECT_EQ(hasten_kv_pool_placement(pool.get(), &p), HASTEN_OK) << hasten_last_error();
    return p;
  }
  /// Device and host blocks in use, and blocks moved to the host so far.
  std::vector<int64_t> used(const hasten::KVPool &pool) {
    hasten_kv_placement p = placementOf(pool);
    return {p.device_blocks_used, p.host_blocks_used, p.blocks_moved_to_host};
  }

  /// Where each block of `seq` is, oldest first: 'D'evice or 'H'ost.
  static std::string blocksOf(const hasten::Sequence &seq) {
    std::string where;
    for (int64_t b = 0;; ++b) {
      int on = hasten_sequence_kv_block_on_device(seq.get(), b);
      if (on < 0)
        return where;
      where += on ? 'D' : 'H';
    }
  }

  std::string directory;
  hasten::Module module;
};

TEST_F(KVSpillTest, NewestBlocksStayOnTheDevice) {
  std::string error;
  ASSERT_EQ(hasten_module_set_kv_device_tokens(module.get(), 32), HASTEN_OK)
      << hasten_last_error();
  hasten::KVPool pool;
  ASSERT_TRUE(pool.create(module, 128, &error)) << error;
  hasten_kv_placement p = placementOf(pool);
  EXPECT_EQ(p.device_blocks, 2);
  EXPECT_EQ(p.host_blocks, 6);
  hasten::Sequence a, b;
  ASSERT_TRUE(a.create(module, &pool, &error)) << error;
  ASSERT_TRUE(a.append(std::vector<int64_t>(16, 3), nullptr, &error)) << error;
  EXPECT_EQ(used(pool), (std::vector<int64_t>{1, 0, 0}));
  // b shares a's first block.
  ASSERT_TRUE(a.fork(b, &error)) << error;
  // Two blocks in one append: the later one takes the device block the
  // earlier one had (neither written yet: nothing moves).
  ASSERT_TRUE(a.append(std::vector<int64_t>(32, 4), nullptr, &error)) << error;
  EXPECT_EQ(used(pool), (std::vector<int64_t>{2, 1, 0}));
  EXPECT_EQ(blocksOf(a), "DHD");
  EXPECT_EQ(blocksOf(b), "D");
  // A fourth block: a's oldest device block that only a holds moves to the
  // host (the shared first block stays).
  ASSERT_TRUE(a.append(std::vector<int64_t>(16, 5), nullptr, &error)) << error;
  EXPECT_EQ(used(pool), (std::vector<int64_t>{2, 2, 1}));
  EXPECT_EQ(blocksOf(a), "DHHD");
  // Once b is gone the first block is a's alone, and moves next.
  b = hasten::Sequence();
  ASSERT_TRUE(a.append(std::vector<int64_t>(16, 6), nullptr, &error)) << error;
  EXPECT_EQ(used(pool), (std::vector<int64_t>{2, 3, 2}));
  EXPECT_EQ(blocksOf(a), "HHHDD");
  // Rolled back, its blocks return to their lists.
  ASSERT_TRUE(a.truncate(16, &error)) << error;
  EXPECT_EQ(used(pool), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(blocksOf(a), "H");
  a = hasten::Sequence();
  EXPECT_EQ(pool.freeBlocks(), 8);
}

TEST_F(KVSpillTest, BudgetsAndRefusals) {
  std::string error;
  // No budget: every block on the device; no device memory at all: every
  // block in host memory, still one pool of the asked size.
  hasten::KVPool all, none;
  ASSERT_TRUE(all.create(module, 128, &error)) << error;
  EXPECT_EQ(placementOf(all).device_blocks, 8);
  EXPECT_EQ(placementOf(all).host_blocks, 0);
  ASSERT_EQ(hasten_module_set_kv_device_tokens(module.get(), 0), HASTEN_OK);
  ASSERT_TRUE(none.create(module, 128, &error)) << error;
  EXPECT_EQ(placementOf(none).device_blocks, 0);
  EXPECT_EQ(placementOf(none).host_blocks, 8);
  // A private pool follows the module's setting too.
  hasten::Sequence seq;
  ASSERT_TRUE(seq.create(module, nullptr, &error)) << error;
  ASSERT_TRUE(seq.append(std::vector<int64_t>(20, 3), nullptr, &error)) << error;
  hasten_kv_placement p{};
  p.struct_size = sizeof(p);
  ASSERT_EQ(hasten_sequence_kv_placement(seq.get(), &p), HASTEN_OK) << hasten_last_error();
  EXPECT_EQ(p.device_blocks_used, 0);
  EXPECT_EQ(p.host_blocks_used, 2);
  EXPECT_EQ(blocksOf(seq), "HH");
  EXPECT_EQ(hasten_module_set_kv_device_tokens(module.get(), -2),
            HASTEN_ERROR_INVALID_ARGUMENT);
  p.struct_size = 0;
  EXPECT_EQ(hasten_kv_pool_placement(all.get(), &p), HASTEN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(hasten_sequence_kv_placement(nullptr, &p), HASTEN_ERROR_INVALID_ARGUMENT);
}

} // namespace
