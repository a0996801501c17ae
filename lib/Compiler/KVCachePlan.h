//===- KVCachePlan.h - the KV cache a decoder's entries get -----*- C++ -*-===//
//
// Read off the imported decoder entries (their past_key_values arguments)
// and the user's --kv-* options, before the tensor pipeline plans the cache.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_LIB_COMPILER_KVCACHEPLAN_H
#define HASTEN_LIB_COMPILER_KVCACHEPLAN_H

#include "hasten/Compiler/Compiler.h"

#include "mlir/IR/BuiltinOps.h"

#include <string>

namespace hasten {

struct KVCachePlan {
  bool decoder = false;
  int64_t layers = 0, kvHeads = 0, headDim = 0, elementBytes = 4;
  mlir::Type elementType;
  int64_t bytesPerToken = 0;
  int64_t capacity = 1024;
  /// Tokens per block; 0 for a contiguous cache.
  int64_t blockSize = 0;
  /// --kv-budget, and the tokens it holds (whole blocks when paged).
  uint64_t budgetBytes = 0;
  int64_t budgetTokens = 0;
  /// --kv-device-tokens in whole blocks (-1: all on the device).
  int64_t deviceTokens = -1;
  /// The positions the model can tell apart: the rows of the smallest
  /// constant table its positions index (a learned position embedding, a
  /// RoPE cos/sin cache, a stored causal mask), 0 when none bounds them.
  /// The capacity never exceeds it: past the table's last row, a Gather
  /// clamps the index and every later token gets the same position.
  int64_t positionRows = 0;
  /// That table's name (empty for an unnamed constant), and the model
  /// namespace of the entry that reads it.
  std::string positionTable, positionModel;
};

/// The cache for the decoder entries of model namespace `model` ("" for the
/// main model; decoder = false when it has none); errors name the option
/// that cannot be met. The capacity is bounded by the position tables of
/// that model's decoder entries (a pair's draft may know fewer positions
/// than its target): a default capacity is lowered to fit, an explicit one
/// that does not fit is an error unless options.lowerToPositions.
mlir::FailureOr<KVCachePlan> planKVCache(mlir::ModuleOp module, const KVCacheOptions &options,
                                         llvm::StringRef model);

/// Records the plan of `model` on the module (`hasten.kv_plans`), so that a
/// module written at a later stage (--compile-to=tensor, buffer) and read
/// back still knows its caches.
void recordKVCachePlan(mlir::ModuleOp module, const KVCachePlan &plan, llvm::StringRef model);
/// The plan recorded for `model`; decoder = false when none is.
mlir::FailureOr<KVCachePlan> readKVCachePlan(mlir::ModuleOp module, llvm::StringRef model);

} // namespace hasten

#endif // HASTEN_LIB_COMPILER_KVCACHEPLAN_H
