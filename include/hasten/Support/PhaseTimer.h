//===- PhaseTimer.h - how long each compiler phase took ---------*- C++ -*-===//

#ifndef HASTEN_SUPPORT_PHASETIMER_H
#define HASTEN_SUPPORT_PHASETIMER_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

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

/// Runs phases and records their durations in `times` (when not null);
/// with a `progress` stream, announces each phase as it starts and says how
/// long it took, so that a long compile shows where it is.
class PhaseTimer {
public:
  explicit PhaseTimer(std::vector<PhaseTime> *times, llvm::raw_ostream *progress = nullptr)
      : times(times), progress(progress) {}
  template <typename Fn>
  auto run(llvm::StringRef phase, Fn &&body) {
    if (progress) {
      *progress << "hasten-compile: [" << ++count << "] " << phase << " ...\n";
      progress->flush();
    }
    auto start = std::chrono::steady_clock::now();
    auto result = body();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (times)
      times->push_back({phase.str(), seconds});
    if (progress) {
      *progress << "hasten-compile: [" << count << "] " << phase << " done in "
                << llvm::format("%.2f", seconds) << " s\n";
      progress->flush();
    }
    return result;
  }

private:
  std::vector<PhaseTime> *times;
  llvm::raw_ostream *progress;
  unsigned count = 0;
};

} // namespace hasten

#endif // HASTEN_SUPPORT_PHASETIMER_H
