//===- MatmulToRuntimeCalls.cpp - matmuls through the runtime's oneDNN -----===//
//
// Generated loops do not compete with a packed GEMM microkernel, so f32
// matmuls on buffers become calls into the runtime, which runs them with
// oneDNN and prepacks constant weights once.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

namespace hasten {
#define GEN_PASS_DEF_MATMULTORUNTIMECALLS
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

/// Runtime flags; keep in sync with runtime/Kernels.cpp.
constexpr int32_t kConstantWeights = 1;
constexpr int32_t kBf16 = 2;
constexpr int32_t kOverwrite = 4;

/// A fully dynamic strided memref of `rank`, the kernels' parameter type.
MemRefType anyStrided(MLIRContext *ctx, int64_t rank) {
  SmallVector<int64_t> shape(rank, ShapedType::kDynamic);
  SmallVector<int64_t> strides(rank, ShapedType::kDynamic);
  auto layout = StridedLayoutAttr::get(ctx, ShapedType::kDynamic, strides);
  return MemRefType::get(shape, Float32Type::get(ctx), layout);
}

/// True when `value` is (a view of) a constant global: a weight.
bool isConstantWeight(Value value) {
  while (Operation *def = value.getDefiningOp()) {
    if (auto global = dyn_cast<memref::GetGlobalOp>(def)) {
      auto symbol = SymbolTable::lookupNearestSymbolFrom<memref::GlobalOp>(
          def, global.getNameAttr());
      return symbol && symbol.getConstant();
    }
    if (auto view = dyn_cast<ViewLikeOpInterface>(def)) {
      value = view.getViewSource();
      continue;
    }
    if (auto cast = dyn_cast<memref::CastOp>(def)) {
      value = cast.getSource();
      continue;
    }
    if (auto transpose = dyn_cast<memref::TransposeOp>(def)) {
      value = transpose.getIn();
      continue;
    }
    return false;
  }
  return false;
}

/// The linalg.fill of zero that last wrote `op`'s output, when nothing else
/// touches memory in between: the matmul can then overwrite instead of
/// accumulate, and the fill is dead.
linalg::FillOp zeroFillBefore(linalg::LinalgOp op) {
  Value output = op.getDpsInits()[0];
  for (Operation *prev = op->getPrevNode(); prev; prev = prev->getPrevNode()) {
    if (auto fill = dyn_cast<linalg::FillOp>(prev)) {
      if (fill.getDpsInits()[0] != output)
        return nullptr;
      auto zero = fill.getInputs()[0].getDefiningOp<arith::ConstantOp>();
      auto value = zero ? dyn_cast<FloatAttr>(zero.getValue()) : nullptr;
      return value && value.getValue().isZero() ? fill : nullptr;
    }
    // Views, constants and index math between the two are fine; anything
    // that may read or write memory is not.
    if (!isMemoryEffectFree(prev) && !isa<ViewLikeOpInterface>(prev))
      return nullptr;
  }
  return nullptr;
}

/// When B is a transposed copy of a constant weight (a tied LM head reads
/// the embedding matrix as Transpose(embed)), returns a transposed view of
/// the weight itself, and erases the copy: the kernels take strided
/// operands, and the copy would cost a pass over the whole matrix per call.
Value viewThroughConstantTranspose(IRRewriter &rewriter, linalg::LinalgOp op) {
  Value b = op->getOperand(1);
  auto alloc = b.getDefiningOp<memref::AllocOp>();
  if (!alloc)
    return nullptr;
  linalg::TransposeOp transpose;
  SmallVector<Operation *> deallocs;
  for (Operation *user : alloc->getUsers()) {
    if (user == op.getOperation())
      continue;
    if (isa<memref::DeallocOp>(user)) {
      deallocs.push_back(user);
      continue;
    }
    auto t = dyn_cast<linalg::TransposeOp>(user);
    if (!t || transpose || t.getInit() != b || t->getBlock() != op->getBlock() ||
        !t->isBeforeInBlock(op))
      return nullptr;
    transpose = t;
  }
  if (!transpose || !isConstantWeight(transpose.getInput()))
    return nullptr;
  ArrayRef<int64_t> perm = transpose.getPermutation();
  auto inputType = cast<MemRefType>(transpose.getInput().getType());
  if (!inputType.getLayout().isIdentity())
    return nullptr;
  rewriter.setInsertionPoint(op);
  auto map = AffineMap::getPermutationMap(perm, op->getContext());
  Value view = memref::TransposeOp::create(rewriter, op.getLoc(), transpose.getInput(),
                                           AffineMapAttr::get(map));
  rewriter.eraseOp(transpose);
  for (Operation *dealloc : deallocs)
    rewriter.eraseOp(dealloc);
  op->setOperand(1, view);
  if (alloc->use_empty())
    rewriter.eraseOp(alloc);
  return view;
}

struct MatmulToRuntimeCallsPass
    : public hasten::impl::MatmulToRuntimeCallsBase<MatmulToRuntimeCallsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    if (weights != "f32" && weights != "bf16") {
      module.emitError("weights must be f32 or bf16, got '") << weights << "'";
      return signalPassFailure();
    }
    SmallVector<linalg::LinalgOp> matmuls;
    module.walk([&](linalg::LinalgOp op) {
      if (!isa<linalg::MatmulOp, linalg::BatchMatmulOp>(op) || !op.hasPureBufferSemantics())
        return;
      // Plain (untransposed, no broadcast) forms on f32 only.
      if (auto matmul = dyn_cast<linalg::MatmulOp>(op.getOperation()))
        if (matmul.hasUserDefinedMaps())
          return;
      if (auto batch = dyn_cast<linalg::BatchMatmulOp>(op.getOperation()))
        if (batch.hasUserDefinedMaps())
          return;
      for (Value operand : op->getOperands())
        if (!cast<MemRefType>(operand.getType()).getElementType().isF32())
          return;
      matmuls.push_back(op);
    });
    if (matmuls.empty())
      return;

    OpBuilder moduleBuilder = OpBuilder::atBlockBegin(module.getBody());
    auto declare = [&](StringRef name, int64_t rank) {
      if (auto existing = module.lookupSymbol<func::FuncOp>(name))
        return existing;
      Type m = anyStrided(ctx, rank);
      auto fn = func::FuncOp::create(
          moduleBuilder, module.getLoc(), name,
          FunctionType::get(ctx, {m, m, m, IntegerType::get(ctx, 32)}, {}));
      fn.setPrivate();
      fn->setAttr("llvm.emit_c_interface", UnitAttr::get(ctx));
      return fn;
    };

    IRRewriter rewriter(ctx);
    for (linalg::LinalgOp op : matmuls) {
      bool batched = isa<linalg::BatchMatmulOp>(op.getOperation());
      int64_t rank = batched ? 3 : 2;
      func::FuncOp kernel =
          declare(batched ? "hasten_rt_batch_matmul_f32" : "hasten_rt_matmul_f32", rank);
      viewThroughConstantTranspose(rewriter, op);
      rewriter.setInsertionPoint(op);
      Location loc = op.getLoc();
      SmallVector<Value> args;
      for (Value operand : op->getOperands())
        args.push_back(memref::CastOp::create(rewriter, loc, anyStrided(ctx, rank), operand));
      int32_t flags = 0;
      if (isConstantWeight(op->getOperand(1)))
        flags |= kConstantWeights;
      if (weights == "bf16")
        flags |= kBf16;
      if (linalg::FillOp fill = zeroFillBefore(op)) {
        flags |= kOverwrite;
        rewriter.eraseOp(fill);
      }
      args.push_back(arith::ConstantIntOp::create(rewriter, loc, flags, 32));
      func::CallOp::create(rewriter, loc, kernel, args);
      rewriter.eraseOp(op);
    }
  }
};
} // namespace
