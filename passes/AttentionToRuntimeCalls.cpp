//===- AttentionToRuntimeCalls.cpp - attention on the runtime's kernel -----===//
//
// The runtime's attention kernel tiles queries and keys and keeps a running
// softmax per query (FlashAttention-2), so the q_len x kv_len scores never
// exist; it reads K and V in place through their strides, which a
// contiguous KV cache view already is. This pass lowers hasten.attention on
// tensors to that call, before bufferization: operands become buffers with
// bufferization.to_buffer, and the result a fresh buffer read back as a
// tensor.
//
//===----------------------------------------------------------------------===//

#include "AttentionCalls.h"
#include "RuntimeCalls.h"
#include "hasten/KernelAbi.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/SymbolTable.h"

namespace hasten {
#define GEN_PASS_DEF_ATTENTIONTORUNTIMECALLS
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;
using namespace hasten;

namespace {

using namespace hasten::abi;

Value asBuffer(OpBuilder &b, Location loc, Value tensor) {
  auto type = cast<RankedTensorType>(tensor.getType());
  Value buffer = hasten::readOnlyBuffer(b, loc, tensor);
  return memref::CastOp::create(
      b, loc, anyStridedMemRef(b.getContext(), type.getRank(), type.getElementType()), buffer);
}

Value castToAnyStrided(OpBuilder &b, Location loc, Value memref) {
  auto type = cast<MemRefType>(memref.getType());
  return memref::CastOp::create(
      b, loc, anyStridedMemRef(b.getContext(), type.getRank(), type.getElementType()), memref);
}

struct AttentionToRuntimeCallsPass
    : public hasten::impl::AttentionToRuntimeCallsBase<AttentionToRuntimeCallsPass> {
  void runOnOperation() override {
    SmallVector<AttentionOp> ops;
    getOperation().walk([&](AttentionOp op) { ops.push_back(op); });
    OpBuilder b(&getContext());
    for (AttentionOp op : ops) {
      if (!canCallAttentionKernel(op))
        continue;
      replaceWithAttentionCall(b, op);
    }
  }
};

} // namespace

Value hasten::readOnlyBuffer(OpBuilder &b, Location loc, Value tensor) {
  auto type = cast<RankedTensorType>(tensor.getType());
  SmallVector<int64_t> strides(type.getRank(), ShapedType::kDynamic);
  auto bufferType = MemRefType::get(
      type.getShape(), type.getElementType(),
      StridedLayoutAttr::get(b.getContext(), ShapedType::kDynamic, strides));
  return bufferization::ToBufferOp::create(b, loc, bufferType, tensor, /*read_only=*/true);
}

bool hasten::canCallAttentionKernel(AttentionOp op) {
  auto element = [](Value v) { return cast<ShapedType>(v.getType()).getElementType(); };
  if (!element(op.getQuery()).isF32() || !element(op.getKey()).isF32() ||
      !element(op.getValue()).isF32())
    return false;
  if (Value mask = op.getMask()) {
    auto type = cast<RankedTensorType>(mask.getType());
    if (!type.getElementType().isF32() || type.getRank() != 4)
      return false;
  }
  return op.getEffectiveScale().has_value();
}

void hasten::replaceWithAttentionCall(OpBuilder &b, AttentionOp op,
                                      const PagedKeysValues *paged) {
  MLIRContext *ctx = b.getContext();
  Location loc = op.getLoc();
  auto module = op->getParentOfType<ModuleOp>();
  b.setInsertionPoint(op);
  Type f32 = b.getF32Type();
  Value q = asBuffer(b, loc, op.getQuery());
  Value mask = op.getMask() ? asBuffer(b, loc, op.getMask()) : q;
  auto resultType = cast<RankedTensorType>(op.getType());
  SmallVector<Value> dynamicSizes;
  for (int64_t d = 0; d < 4; ++d)
    if (resultType.isDynamicDim(d))
      dynamicSizes.push_back(tensor::DimOp::create(
          b, loc, d == 3 ? op.getValue() : op.getQuery(), d));
  auto outType = MemRefType::get(resultType.getShape(), f32);
  Value out = memref::AllocOp::create(b, loc, outType, dynamicSizes);
  Value scale = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(*op.getEffectiveScale()));
  int32_t flags = (op.getCausal() ? kCausal : 0) | (op.getMask() ? kHasMask : 0);
  Value flagValue = arith::ConstantIntOp::create(b, loc, flags, 32);
  Type m4 = anyStridedMemRef(ctx, 4, f32);
  if (!paged) {
    Value k = asBuffer(b, loc, op.getKey()), v = asBuffer(b, loc, op.getValue());
    func::FuncOp fn =
        declareRuntimeFunction(module, "hasten_rt_attention_f32", {m4, m4, m4, m4, m4, f32, b.getI32Type()});
    func::CallOp::create(b, loc, fn,
                         ValueRange{q, k, v, mask, castToAnyStrided(b, loc, out), scale,
                                    flagValue});
  } else {
    Type m6 = anyStridedMemRef(ctx, 6, f32);
    Type table = anyStridedMemRef(ctx, 1, b.getI32Type());
    func::FuncOp fn = declareRuntimeFunction(module, "hasten_rt_paged_attention_f32",
                              {m4, m6, table, b.getI64Type(), b.getI64Type(), m4, m4, f32,
                               b.getI32Type()});
    Value layer = arith::ConstantIntOp::create(b, loc, paged->layer, 64);
    Value length = arith::IndexCastOp::create(b, loc, b.getI64Type(), paged->length);
    func::CallOp::create(b, loc, fn,
                         ValueRange{q, castToAnyStrided(b, loc, paged->pool),
                                    castToAnyStrided(b, loc, paged->table), layer, length,
                                    mask, castToAnyStrided(b, loc, out), scale, flagValue});
  }
  Value result = bufferization::ToTensorOp::create(b, loc, resultType, out,
                                                   /*restrict=*/true, /*writable=*/true);
  op.getResult().replaceAllUsesWith(result);
  op.erase();
}
