//===- PhaseTimer.h - how long each compiler phase took ---------*- C++ -*-===//

#ifndef HASTEN_SUPPORT_PHASETIMER_H
#define HASTEN_SUPPORT_PHASETIMER_H

#include "llvm/ADT/StringRef.h"

#include <chrono>
#include <string>
#include <vector>

namespace hasten {

/// One phase and the seconds it took, for the timing report (the caller of
/// the compiler decides whether to print it).
struct PhaseTime {
  std::string phase;
  double seconds;
};

/// Runs phases and records their durations in `times` (when not null).
class PhaseTimer {
public:
  explicit PhaseTimer(std::vector<PhaseTime> *times) : times(times) {}
  template <typename Fn>
  auto run(llvm::StringRef phase, Fn &&body) {
    auto start = std::chrono::steady_clock::now();
    auto result = body();
    if (times)
      times->push_back(
          {phase.str(),
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()});
    return result;
  }

private:
  std::vector<PhaseTime> *times;
};

} // namespace hasten

#endif // HASTEN_SUPPORT_PHASETIMER_H
