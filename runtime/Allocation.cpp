//===- Allocation.cpp - the allocator generated code calls ----------------===//
//
// Modules allocate their activations through these functions (the LLVM
// lowering's generic allocation functions) instead of calling malloc
// directly, so that a failed allocation is an error of the run, not a write
// through NULL. During hasten_run the runtime tracks what the entry has
// allocated; when an allocation fails it frees all of it and returns to
// hasten_run, which reports HASTEN_ERROR_OUT_OF_MEMORY naming the entry and
// the size. Generated code holds no resources of its own, so leaving its
// frames this way skips nothing.
//
//===----------------------------------------------------------------------===//

#include "RuntimeInternal.h"

#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unordered_set>

using hasten::runtime::RunAllocations;

namespace {
thread_local RunAllocations *currentRun = nullptr;

void *track(void *pointer, size_t size) {
  RunAllocations *run = currentRun;
  if (!pointer) {
    if (run) {
      run->failedBytes = size;
      std::longjmp(run->escape, 1);
    }
    // A thread of the pool, or a call outside hasten_run: there is no way
    // back to the caller, so say what happened before stopping.
    std::fprintf(stderr, "hasten: out of memory allocating %zu bytes outside a run\n", size);
    std::abort();
  }
  if (run)
    run->live.insert(pointer);
  return pointer;
}
} // namespace

void hasten::runtime::beginRun(RunAllocations &run) { currentRun = &run; }

void hasten::runtime::endRun(RunAllocations &run, bool failed) {
  currentRun = nullptr;
  if (failed)
    for (void *pointer : run.live)
      std::free(pointer);
  run.live.clear();
}

extern "C" {

__attribute__((visibility("default"))) void *_mlir_memref_to_llvm_alloc(size_t size) {
  return track(std::malloc(size ? size : 1), size);
}

__attribute__((visibility("default"))) void *_mlir_memref_to_llvm_aligned_alloc(size_t alignment,
                                                                                 size_t size) {
  void *pointer = nullptr;
  if (alignment < sizeof(void *))
    alignment = sizeof(void *);
  if (posix_memalign(&pointer, alignment, size ? size : 1) != 0)
    pointer = nullptr;
  return track(pointer, size);
}

__attribute__((visibility("default"))) void _mlir_memref_to_llvm_free(void *pointer) {
  if (currentRun)
    currentRun->live.erase(pointer);
  std::free(pointer);
}

} // extern "C"
