//===- AttentionCalls.h - hasten.attention as runtime kernel calls -*- C++ -*-===//
//
// Shared by hasten-attention-to-runtime-calls (keys and values in tensors)
// and hasten-lower-kv-cache (keys and values in a paged cache).
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_PASSES_ATTENTIONCALLS_H
#define HASTEN_PASSES_ATTENTIONCALLS_H

#include "hasten/Dialect/Hasten/HastenDialect.h"

#include "mlir/IR/Builders.h"

namespace hasten {

/// Keys and values of one layer of a paged cache.
struct PagedKeysValues {
  mlir::Value pool;  // memref<blocks x layers x 2 x kv_heads x block x head_dim>
  mlir::Value table; // memref<blocks_per_sequence x i32>
  int64_t layer;
  mlir::Value length; // index: tokens to attend
};

/// Whether `op` can run on the runtime's kernel (f32, additive or no mask).
bool canCallAttentionKernel(AttentionOp op);

/// `tensor` read in place as a buffer of fully dynamic strides
/// (bufferization.to_buffer read_only), as attention lowerings take their
/// operands before bufferization.
mlir::Value readOnlyBuffer(mlir::OpBuilder &b, mlir::Location loc, mlir::Value tensor);

/// Replaces `op` by a call of the runtime's attention kernel on buffers of
/// its operands; with `paged`, keys and values are read from the cache
/// instead of op's key and value operands.
void replaceWithAttentionCall(mlir::OpBuilder &b, AttentionOp op,
                              const PagedKeysValues *paged = nullptr);

} // namespace hasten

#endif // HASTEN_PASSES_ATTENTIONCALLS_H
