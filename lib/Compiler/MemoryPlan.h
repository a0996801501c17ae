//===- MemoryPlan.h - activation memory plan of bufferized entries -*- C++ -*-===//
//
// A static, liveness-based plan of the activation buffers of one bufferized
// function: every memref.alloc gets an offset in one arena such that buffers
// alive at the same time never overlap. Dynamic sizes are evaluated for a
// stated workload (tokens in, tokens already cached). Private to the
// compiler driver, which prints it with --memory-report.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_LIB_COMPILER_MEMORYPLAN_H
#define HASTEN_LIB_COMPILER_MEMORYPLAN_H

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <cstdint>
#include <optional>

namespace hasten {

/// The workload a plan is evaluated at: the size of every dynamic dimension
/// of the argument with hasten.role "token_ids" (its token count), and the
/// value of the scalar "past_length" argument.
struct PlanWorkload {
  int64_t tokens = 1;
  int64_t pastLength = 0;
  /// Any other dynamic argument dimension.
  int64_t otherDynamicDims = 1;
};

struct ActivationPlan {
  /// Buffers the function allocates.
  int64_t buffers = 0;
  /// Sum of their sizes: what allocating each separately holds at most.
  int64_t totalBytes = 0;
  /// The most bytes alive at one point of the function.
  int64_t peakLiveBytes = 0;
  /// Arena size with liveness-based reuse (offsets by best fit, 64-byte
  /// aligned); at least peakLiveBytes.
  int64_t arenaBytes = 0;
  /// Buffers whose size could not be evaluated (left out of the figures).
  int64_t unknownSizes = 0;
};

/// Plans `func`, which must be bufferized (memref.alloc for activations).
ActivationPlan planActivations(mlir::func::FuncOp func, const PlanWorkload &workload);

} // namespace hasten

#endif // HASTEN_LIB_COMPILER_MEMORYPLAN_H
