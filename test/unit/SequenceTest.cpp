//===- SequenceTest.cpp - the C++ sequence and generation wrappers ---------===//
//
// runtime.hpp's KVPool, Sequence and generate over a compiled tiny decoder
// (test/models/make_decoder.py): generation agrees with a step-by-step
// greedy loop through the same wrapper, forks and rollbacks agree with a
// fresh sequence fed the same tokens, and refusals come back as errors.
// The logits themselves are checked against numpy in
// test/e2e/generation_vs_numpy.py.
//
//===----------------------------------------------------------------------===//

#include "CompileForTest.h"
#include "hasten/runtime.hpp"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <algorithm>
#include <gtest/gtest.h>

namespace {

class SequenceTest : public ::testing::TestWithParam<int64_t> {
protected:
  void SetUp() override {
    llvm::SmallString<128> dir;
    ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("hasten-seq", dir));
    directory = std::string(dir);
    std::string onnxPath = directory + "/gpt2.onnx";
    ASSERT_TRUE(hasten::test::makeTestDecoder("gpt2-tiny", onnxPath));
    modulePath = directory + "/gpt2.so";
    hasten::CompileOptions options;
    options.kv.capacity = 64;
    options.kv.blockSize = GetParam();
    std::string diagnostics = hasten::test::compileForTest(onnxPath, modulePath, options);
    ASSERT_TRUE(diagnostics.empty()) << diagnostics;
    std::string error;
    ASSERT_TRUE(module.load(modulePath, &error)) << error;
  }
  void TearDown() override { llvm::sys::fs::remove_directories(directory); }

  std::string directory, modulePath;
  hasten::Module module;
};

int64_t argmax(const std::vector<float> &v) {
  return std::max_element(v.begin(), v.end()) - v.begin();
}

TEST_P(SequenceTest, GenerateMatchesAGreedyLoop) {
  ASSERT_TRUE(module.isDecoder());
  EXPECT_EQ(module.vocabSize(), 256);
  EXPECT_EQ(module.kvCapacity(), 64);
  std::string error;
  hasten::Sequence generated, stepped;
  ASSERT_TRUE(generated.create(module, nullptr, &error)) << error;
  ASSERT_TRUE(stepped.create(module, nullptr, &error)) << error;
  hasten::GenerateOptions options;
  options.max_new_tokens = 12;
  hasten_generate_stats stats{};
  std::vector<int64_t> tokens = generated.generate({1, 17, 42}, options, &stats, &error);
  ASSERT_EQ(tokens.size(), 12u) << error;
  EXPECT_EQ(stats.prompt_tokens, 3);
  EXPECT_EQ(stats.generated_tokens, 12);

  std::vector<float> logits;
  ASSERT_TRUE(stepped.append({1, 17, 42}, &logits, &error)) << error;
  for (size_t i = 0; i < tokens.size(); ++i) {
    EXPECT_EQ(argmax(logits), tokens[i]) << "token " << i;
    if (i + 1 < tokens.size())
      ASSERT_TRUE(stepped.append({tokens[i]}, &logits, &error)) << error;
  }
  // The last generated token is returned, not appended.
  EXPECT_EQ(generated.length(), 3 + 11);
  EXPECT_EQ(generated.tokens(), stepped.tokens());
}

TEST_P(SequenceTest, SpeculationKeepsTheGreedyOutput) {
  // Any decoder with the target's vocabulary can draft, the target itself
  // included (every proposal accepted), and prompt lookup needs none.
  std::string error;
  hasten::Sequence plain, target, draft, lookup;
  ASSERT_TRUE(plain.create(module, nullptr, &error)) << error;
  ASSERT_TRUE(target.create(module, nullptr, &error)) << error;
  ASSERT_TRUE(draft.createForModel(module, "", nullptr, &error)) << error;
  ASSERT_TRUE(lookup.create(module, nullptr, &error)) << error;
  hasten::GenerateOptions options;
  options.max_new_tokens = 20;
  hasten::SpeculationOptions speculation;
  speculation.k = 3;
  std::vector<int64_t> want = plain.generate({1, 17, 42, 1, 17}, options, nullptr, &error);
  ASSERT_EQ(want.size(), 20u) << error;
  hasten_speculation_stats stats{};
  std::vector<int64_t> got = target.generateSpeculative({1, 17, 42, 1, 17}, &draft, options,
                                                        speculation, nullptr, &stats, &error);
  EXPECT_EQ(got, want) << error;
  EXPECT_GT(stats.drafted, 0);
  EXPECT_EQ(stats.accepted, stats.drafted);
  EXPECT_EQ(target.tokens(), plain.tokens());
  got = lookup.generateSpeculative({1, 17, 42, 1, 17}, nullptr, options, speculation, nullptr,
                                   nullptr, &error);
  EXPECT_EQ(got, want) << error;

  // verify() scores every token as single decode steps do.
  hasten::Sequence verified, stepped;
  ASSERT_TRUE(verified.create(module, nullptr, &error)) << error;
  ASSERT_TRUE(stepped.create(module, nullptr, &error)) << error;
  ASSERT_TRUE(verified.append({3, 1, 4}, nullptr, &error)) << error;
  ASSERT_TRUE(stepped.append({3, 1, 4}, nullptr, &error)) << error;
  std::vector<float> rows, row;
  ASSERT_TRUE(verified.verify({1, 5, 9}, &rows, &error)) << error;
  ASSERT_EQ(rows.size(), 3u * 256u);
  const int64_t more[] = {1, 5, 9};
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(stepped.append({more[i]}, &row, &error)) << error;
    for (size_t j = 0; j < row.size(); ++j)
      EXPECT_NEAR(rows[i * 256 + j], row[j], 1e-4f * (1 + std::abs(row[j])))
          << "token " << i << ", logit " << j;
  }
}

TEST_P(SequenceTest, ForkAndRollbackMatchAFreshSequence) {
  std::string error;
  hasten::Sequence parent, child, fresh;
  ASSERT_TRUE(parent.create(module, nullptr, &error)) << error;
  std::vector<float> parentLogits, childLogits, freshLogits;
  ASSERT_TRUE(parent.append({3, 1, 4, 1, 5}, nullptr, &error)) << error;
  ASSERT_TRUE(parent.fork(child, &error)) << error;
  ASSERT_TRUE(child.append({9, 2}, nullptr, &error)) << error;
  // Roll the child back to the prompt and take another path.
  ASSERT_TRUE(child.truncate(5, &error)) << error;
  ASSERT_TRUE(child.append({6}, &childLogits, &error)) << error;
  ASSERT_TRUE(parent.append({6}, &parentLogits, &error)) << error;
  ASSERT_TRUE(fresh.create(module, nullptr, &error)) << error;
  ASSERT_TRUE(fresh.append({3, 1, 4, 1, 5, 6}, &freshLogits, &error)) << error;
  EXPECT_EQ(childLogits, parentLogits);
  // The fresh sequence ran the six tokens as one prefill; the others as a
  // prefill and a decode step: the same math in another order.
  for (size_t i = 0; i < freshLogits.size(); ++i)
    EXPECT_NEAR(childLogits[i], freshLogits[i], 1e-4f * (1 + std::abs(freshLogits[i])));
}

TEST_P(SequenceTest, RefusalsAreErrorsAndChangeNothing) {
  std::string error;
  hasten::Sequence seq;
  ASSERT_TRUE(seq.create(module, nullptr, &error)) << error;
  std::vector<int64_t> full(64, 7);
  ASSERT_TRUE(seq.append(full, nullptr, &error)) << error;
  EXPECT_FALSE(seq.append({1}, nullptr, &error));
  EXPECT_NE(error.find("KV cache full"), std::string::npos) << error;
  EXPECT_EQ(seq.length(), 64);
  EXPECT_TRUE(seq.truncate(10, &error)) << error;
  EXPECT_FALSE(seq.append({256}, nullptr, &error));
  EXPECT_NE(error.find("outside the vocabulary"), std::string::npos) << error;
  EXPECT_EQ(seq.length(), 10);
  if (GetParam() > 0) {
    hasten::KVPool pool;
    ASSERT_TRUE(pool.create(module, 32, &error)) << error;
    EXPECT_EQ(pool.numBlocks(), 32 / GetParam());
    hasten::Sequence a, b;
    ASSERT_TRUE(a.create(module, &pool, &error)) << error;
    ASSERT_TRUE(a.append(std::vector<int64_t>(30, 3), nullptr, &error)) << error;
    ASSERT_TRUE(b.create(module, &pool, &error)) << error;
    EXPECT_FALSE(b.append(std::vector<int64_t>(8, 3), nullptr, &error));
    EXPECT_NE(error.find("pool exhausted"), std::string::npos) << error;
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, SequenceTest, ::testing::Values(0, 16),
                         [](const ::testing::TestParamInfo<int64_t> &info) {
                           return info.param ? std::string("Paged") : std::string("Contiguous");
                         });

} // namespace
