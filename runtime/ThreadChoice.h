//===- ThreadChoice.h - an entry on the pool or on the caller alone -------===//
//
// The policy hasten_run uses to decide, per entry and input shape, whether
// a call runs on the thread pool or on the calling thread alone, learned
// from the calls themselves. Header-only, so that unit tests drive it with
// chosen times.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_RUNTIME_THREADCHOICE_H
#define HASTEN_RUNTIME_THREADCHOICE_H

#include <algorithm>
#include <cstdint>
#include <vector>

namespace hasten::runtime {

/// A small model's call can be slower on two threads than on one: each
/// parallel loop and oneDNN product wakes the pool and waits for it, and the
/// operands the calling thread just wrote move to another core's cache and
/// back (the flow vocoder's 4-step sampler: 0.17 ms on one thread, 0.37 ms
/// on two). Whether a call pays for its threads depends on the model, the
/// shape and the machine, so it is measured: the first calls of a shape
/// alternate between the pool and the caller alone, kRun calls on each side
/// in a row of which only the last is timed (the first after a switch pays
/// for moving the operands between cores' caches, which a run that stays
/// on one side does not: timing it favoured the pool where one thread was
/// 1.4x faster). Each pool call is paired with the call alone after it; the
/// caller runs alone when the median of the pairs' time ratios says it is
/// faster (a pair's two calls see the same machine: this host's neighbours
/// slow everything by up to 25% for seconds at a time, which shifts two
/// separate medians but not a ratio).
/// Every kRecheck calls the choice is measured again (the machine's load
/// changes). Two calls of kLongCall or more on the pool (the
/// warm-up included) keep the pool without trying one thread: such calls
/// have the work to share, and a trial on one thread would cost the most
/// there; two, so that one call the machine paused decides nothing.
///
/// Generated loops and the runtime's own kernels compute the same values
/// on one thread as on several (they split rows, not sums; the samplers'
/// outputs were bitwise equal); a oneDNN product that splits a long sum
/// across threads may round differently.
class ThreadChoice {
public:
  static constexpr int kWarmup = 2;  // first calls: caches, packing, pool start
  static constexpr int kRun = 2;     // calls on one side in a row
  static constexpr int kSamples = 7; // timed pairs
  static constexpr int64_t kRecheck = 4096;
  static constexpr double kLongCall = 0.02; // seconds

  struct Plan {
    int threads;  // for this call
    bool timed;   // its time goes to record()
    bool warmup;  // a warm-up or settling call: its time counts only if long
  };

  /// The threads for the next call when the caller allows `maxThreads`.
  Plan next(int maxThreads) {
    if (maxThreads <= 1)
      return {maxThreads, false, false};
    if (maxThreads != explored) {
      restart();
      explored = maxThreads;
    }
    if (decided) {
      if (++sinceDecided < kRecheck)
        return {alone ? 1 : maxThreads, false, false};
      restart();
    }
    int64_t call = calls++;
    if (call < kWarmup)
      return {maxThreads, true, true};
    // Alternate, so that a slow stretch of the machine falls on both.
    int64_t run = (call - kWarmup) / kRun;
    bool last = (call - kWarmup) % kRun == kRun - 1;
    return {run % 2 ? 1 : maxThreads, true, !last};
  }

  /// The time of a call that next() planned as timed.
  void record(const Plan &plan, double seconds) {
    if (decided)
      return;
    if (plan.threads > 1 && seconds >= kLongCall && ++longCalls >= 2) {
      decide(false);
      return;
    }
    if (plan.warmup)
      return;
    std::vector<double> &side = plan.threads > 1 ? pooled : single;
    if ((int)side.size() < kSamples)
      side.push_back(seconds);
    if ((int)pooled.size() == kSamples && (int)single.size() == kSamples) {
      std::vector<double> ratios;
      for (int i = 0; i < kSamples; ++i)
        ratios.push_back(single[i] / std::max(pooled[i], 1e-9));
      decide(median(ratios) < 1.0);
    }
  }

  /// Whether the choice is made, and whether it is the calling thread alone.
  bool isDecided() const { return decided; }
  bool runsAlone() const { return decided && alone; }

private:
  static double median(std::vector<double> v) {
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
  }
  void decide(bool runAlone) {
    decided = true;
    alone = runAlone;
    sinceDecided = 0;
  }
  void restart() {
    decided = alone = false;
    calls = sinceDecided = 0;
    longCalls = 0;
    pooled.clear();
    single.clear();
  }

  int explored = 0;
  bool decided = false, alone = false;
  int64_t calls = 0, sinceDecided = 0;
  int longCalls = 0;
  std::vector<double> pooled, single;
};

} // namespace hasten::runtime

#endif // HASTEN_RUNTIME_THREADCHOICE_H
