//===- AttentionTiling.h - target descriptions and attention tile plans -*- C++ -*-===//
//
// Shared by hasten-plan-attention (which records a plan on each op) and
// hasten-tile-attention (which lowers an op by its plan, planning first
// when none is recorded).
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_PASSES_ATTENTIONTILING_H
#define HASTEN_PASSES_ATTENTIONTILING_H

#include "hasten/Dialect/Hasten/HastenDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Support/LLVM.h"

#include <limits>
#include <string>

namespace hasten {

/// What a target offers attention tiling: cache or on-chip buffer sizes,
/// vector width, and for GPUs the shared memory, warps and MMA shape.
struct AttentionTarget {
  std::string name; // cpu, ascend, sm_70, sm_80, sm_90
  // CPUs.
  int64_t l1Bytes = 0, l2Bytes = 0, vectorBits = 0;
  // Accelerators: on-chip operand memory per block (shared memory, or
  // Ascend's unified buffer), parallel units (SMs, AI cores), warps per
  // block, the matrix instruction and its M x N x K, shared-memory banks.
  int64_t onChipBytes = 0, units = 0, warps = 0;
  std::string mma;
  int64_t mmaM = 0, mmaN = 0, mmaK = 0;
  int64_t bankBytes = 4, banks = 32;
};

/// The description of a named target; CPU sizes may be overridden (0 keeps
/// the default). Fails with a message naming the known targets.
mlir::FailureOr<AttentionTarget> getAttentionTarget(llvm::StringRef name, int64_t l1Bytes,
                                                    int64_t l2Bytes, int64_t vectorBits,
                                                    std::string &error);

/// The tiling of `op` on `target`: tile sizes from the head dims, the
/// query length (one query: split-KV decode) and the target's memories.
AttentionTilingAttr planAttentionTiling(AttentionOp op, const AttentionTarget &target);

/// Bytes one block's tiles take with `tiling` (Q block, K and V tiles, a
/// scores tile, running max/sum and the output accumulator), in the
/// compute precision: what must stay on chip, independent of the lengths.
int64_t attentionWorkingSetBytes(AttentionOp op, AttentionTilingAttr tiling);

/// The online softmax's last step, acc / l, for every lowering of
/// hasten.attention. l is at least 1 when a row sees a key (the row
/// maximum's own term is 1) and exactly 0 when it sees none, with acc 0 too:
/// dividing by max(l, FLT_MIN) gives such a row zeros, as the op defines
/// (and the runtime kernel computes), instead of 0 / 0.
inline mlir::Value divideBySum(mlir::OpBuilder &b, mlir::Location loc, mlir::Value acc,
                               mlir::Value l) {
  mlir::Value tiny = mlir::arith::ConstantOp::create(
      b, loc, b.getFloatAttr(l.getType(), std::numeric_limits<float>::min()));
  return mlir::arith::DivFOp::create(b, loc, acc,
                                     mlir::arith::MaximumFOp::create(b, loc, l, tiny));
}

} // namespace hasten

#endif // HASTEN_PASSES_ATTENTIONTILING_H
