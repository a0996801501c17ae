//===- ThreadChoiceTest.cpp - an entry on the pool or on the caller alone -===//
//
// hasten_run asks ThreadChoice, call by call, how many threads an entry's
// call gets. These tests drive it with chosen call times (the real ones
// depend on the machine): warm-up, alternation, the faster median winning
// whatever the order of the samples, pairs rather than separate medians,
// long calls keeping the pool (one
// long call deciding nothing), the
// periodic recheck, and a change of the caller's thread count.
//
//===----------------------------------------------------------------------===//

#include "ThreadChoice.h"

#include <gtest/gtest.h>

#include <functional>

using hasten::runtime::ThreadChoice;

namespace {

/// Runs `calls` calls of a shape whose time on `threads` is `timeOf`; the
/// threads each call got.
std::vector<int> drive(ThreadChoice &choice, int maxThreads, int calls,
                       const std::function<double(int threads, int call)> &timeOf) {
  std::vector<int> got;
  for (int c = 0; c < calls; ++c) {
    ThreadChoice::Plan plan = choice.next(maxThreads);
    got.push_back(plan.threads);
    if (plan.timed)
      choice.record(plan, timeOf(plan.threads, c));
  }
  return got;
}

int exploring() { return ThreadChoice::kWarmup + 2 * ThreadChoice::kRun * ThreadChoice::kSamples; }

/// Which side call `call` of the exploration runs on, and the pair it
/// belongs to.
bool onPool(int call) { return (call - ThreadChoice::kWarmup) / ThreadChoice::kRun % 2 == 0; }
int pairOf(int call) { return (call - ThreadChoice::kWarmup) / (2 * ThreadChoice::kRun); }

} // namespace

TEST(ThreadChoiceTest, OneThreadWinsWhereItIsFaster) {
  ThreadChoice choice;
  std::vector<int> got = drive(choice, 2, exploring() + 10,
                               [](int threads, int) { return threads > 1 ? 3e-4 : 2e-4; });
  // Warm-up on the pool, then runs of kRun calls alternating, starting
  // with the pool.
  for (int c = 0; c < ThreadChoice::kWarmup; ++c)
    EXPECT_EQ(got[c], 2);
  for (int c = ThreadChoice::kWarmup; c < exploring(); ++c)
    EXPECT_EQ(got[c], onPool(c) ? 2 : 1) << "call " << c;
  EXPECT_TRUE(choice.runsAlone());
  for (int c = exploring(); c < (int)got.size(); ++c)
    EXPECT_EQ(got[c], 1);
}

TEST(ThreadChoiceTest, ThePoolWinsWhereItIsFaster) {
  ThreadChoice choice;
  std::vector<int> got = drive(choice, 4, exploring() + 10,
                               [](int threads, int) { return threads > 1 ? 1e-4 : 3e-4; });
  EXPECT_TRUE(choice.isDecided());
  EXPECT_FALSE(choice.runsAlone());
  for (int c = exploring(); c < (int)got.size(); ++c)
    EXPECT_EQ(got[c], 4);
}

TEST(ThreadChoiceTest, MediansNotMeansDecide) {
  // The pool is faster in four calls of five; one outlier of 10 ms (the
  // machine paused) must not hand the choice to one thread.
  ThreadChoice choice;
  int pooledCalls = 0;
  drive(choice, 2, exploring(), [&](int threads, int) {
    if (threads == 1)
      return 3e-4;
    return ++pooledCalls == 2 ? 1e-2 : 2e-4;
  });
  ASSERT_TRUE(choice.isDecided());
  EXPECT_FALSE(choice.runsAlone());
  // And the other way round.
  ThreadChoice other;
  int aloneCalls = 0;
  drive(other, 2, exploring(), [&](int threads, int) {
    if (threads > 1)
      return 3e-4;
    return ++aloneCalls == 3 ? 1e-2 : 2e-4;
  });
  ASSERT_TRUE(other.isDecided());
  EXPECT_TRUE(other.runsAlone());
}

TEST(ThreadChoiceTest, TheFirstCallAfterASwitchIsNotTimed) {
  // Each switch to one thread costs its first call double (the operands
  // come back from the other core); in a run that stays alone they would
  // not, and one thread is faster there.
  ThreadChoice choice;
  drive(choice, 2, exploring(), [](int threads, int call) {
    bool first = (call - ThreadChoice::kWarmup) % ThreadChoice::kRun == 0;
    double t = threads > 1 ? 3e-4 : 2e-4;
    return first && threads == 1 ? 2 * t : t;
  });
  ASSERT_TRUE(choice.isDecided());
  EXPECT_TRUE(choice.runsAlone());
}

TEST(ThreadChoiceTest, PairsNotSeparateMediansDecide) {
  // One thread is 10% faster in every pair, but the machine slows down
  // twofold between the pool call and the call alone of the fourth pair:
  // the medians of the two sides taken apart (1 against 1.8) would choose
  // the pool; the pairs' ratios (0.9 six times) choose one thread.
  static_assert(ThreadChoice::kSamples == 7, "the schedule below has seven pairs");
  ThreadChoice choice;
  drive(choice, 2, exploring(), [](int threads, int call) {
    int pair = pairOf(call);
    bool slow = threads > 1 ? pair >= 4 : pair >= 3;
    double pool = slow ? 2e-4 : 1e-4;
    return threads > 1 ? pool : 0.9 * pool;
  });
  ASSERT_TRUE(choice.isDecided());
  EXPECT_TRUE(choice.runsAlone());
}

TEST(ThreadChoiceTest, LongCallsKeepThePoolWithoutTryingOneThread) {
  ThreadChoice choice;
  std::vector<int> got = drive(choice, 2, 50, [](int threads, int) {
    return threads > 1 ? 2 * ThreadChoice::kLongCall : ThreadChoice::kLongCall;
  });
  EXPECT_TRUE(choice.isDecided());
  EXPECT_FALSE(choice.runsAlone());
  for (int threads : got)
    EXPECT_EQ(threads, 2);
}

TEST(ThreadChoiceTest, OneLongCallDecidesNothing) {
  // The machine paused one short call on the pool past kLongCall: one
  // thread is still tried, and wins.
  ThreadChoice choice;
  std::vector<int> got = drive(choice, 2, exploring(), [](int threads, int call) {
    if (call == ThreadChoice::kWarmup + ThreadChoice::kRun - 1)
      return 5 * ThreadChoice::kLongCall;
    return threads > 1 ? 3e-4 : 2e-4;
  });
  EXPECT_EQ(got[ThreadChoice::kWarmup + ThreadChoice::kRun], 1);
  EXPECT_TRUE(choice.runsAlone());
}

TEST(ThreadChoiceTest, TheChoiceIsMeasuredAgain) {
  // One thread wins first; after kRecheck calls the machine has changed
  // and the pool wins.
  ThreadChoice choice;
  bool changed = false;
  auto timeOf = [&](int threads, int) {
    bool poolFaster = changed;
    return (threads > 1) == poolFaster ? 1e-4 : 3e-4;
  };
  drive(choice, 2, exploring(), timeOf);
  ASSERT_TRUE(choice.runsAlone());
  std::vector<int> kept = drive(choice, 2, ThreadChoice::kRecheck - 1, timeOf);
  for (int threads : kept)
    ASSERT_EQ(threads, 1);
  changed = true;
  std::vector<int> again = drive(choice, 2, exploring() + 1, timeOf);
  EXPECT_EQ(again[ThreadChoice::kWarmup + ThreadChoice::kRun], 1)
      << "the recheck tries one thread again";
  EXPECT_TRUE(choice.isDecided());
  EXPECT_FALSE(choice.runsAlone());
  EXPECT_EQ(again.back(), 2);
}

TEST(ThreadChoiceTest, OneAllowedThreadIsNeverTimed) {
  ThreadChoice choice;
  for (int c = 0; c < 30; ++c) {
    ThreadChoice::Plan plan = choice.next(1);
    EXPECT_EQ(plan.threads, 1);
    EXPECT_FALSE(plan.timed);
  }
  EXPECT_FALSE(choice.isDecided());
}

TEST(ThreadChoiceTest, AnotherThreadCountStartsOver) {
  ThreadChoice choice;
  drive(choice, 2, exploring(), [](int threads, int) { return threads > 1 ? 3e-4 : 1e-4; });
  ASSERT_TRUE(choice.runsAlone());
  // The caller now allows 8 threads: what held for 2 is not known for 8.
  ThreadChoice::Plan plan = choice.next(8);
  EXPECT_EQ(plan.threads, 8);
  EXPECT_FALSE(choice.isDecided());
}
