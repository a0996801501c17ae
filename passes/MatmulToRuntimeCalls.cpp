//===- MatmulToRuntimeCalls.cpp - matmuls through the runtime's oneDNN -----===//
//
// Generated loops do not compete with a packed GEMM microkernel, so f32
// matmuls on buffers become calls into the runtime, which runs them with
// oneDNN and prepacks constant weights once.
//
//===----------------------------------------------------------------------===//

#include "RuntimeCalls.h"
#include "hasten/KernelAbi.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include <cstring>

namespace hasten {
#define GEN_PASS_DEF_MATMULTORUNTIMECALLS
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

using namespace hasten::abi;
using hasten::anyStridedMemRef;

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

/// A bf16 copy of the constant f32 global `global` (created once, next to
/// it), or null when its value cannot be read.
memref::GlobalOp bf16GlobalFor(memref::GlobalOp global, SymbolTable &symbols) {
  std::string name = (global.getSymName() + "_bf16").str();
  if (auto existing = symbols.lookup<memref::GlobalOp>(name))
    return existing;
  auto initial = global.getInitialValue();
  if (!initial)
    return nullptr;
  std::vector<float> values;
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(*initial)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob)
      return nullptr;
    ArrayRef<char> bytes = blob->getData();
    values.resize(bytes.size() / sizeof(float));
    std::memcpy(values.data(), bytes.data(), values.size() * sizeof(float));
  } else if (auto dense = dyn_cast<DenseElementsAttr>(*initial)) {
    for (float v : dense.getValues<float>())
      values.push_back(v);
  } else {
    return nullptr;
  }
  MemRefType f32Type = global.getType();
  if ((int64_t)values.size() != f32Type.getNumElements())
    return nullptr;
  std::vector<uint16_t> halves(values.size());
  for (size_t i = 0; i < values.size(); ++i)
    halves[i] = toBf16(values[i]);
  MLIRContext *ctx = global.getContext();
  Type bf16 = BFloat16Type::get(ctx);
  auto tensorType = RankedTensorType::get(f32Type.getShape(), bf16);
  // Named after the weight, so the manifest lists it by its ONNX name.
  std::string key = "weight_bf16";
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(*initial))
    key = (resource.getRawHandle().getKey() + ".bf16").str();
  auto attr = DenseResourceElementsAttr::get(
      tensorType, key,
      HeapAsmResourceBlob::allocateAndCopyInferAlign<uint16_t>(halves));
  OpBuilder b(global);
  auto copy = memref::GlobalOp::create(b, global.getLoc(), name, b.getStringAttr("private"),
                                       MemRefType::get(f32Type.getShape(), bf16), attr,
                                       /*constant=*/true, b.getI64IntegerAttr(64));
  symbols.insert(copy);
  return copy;
}

/// With --weights=bf16: B as a view of a bf16 copy of its constant weight
/// (through the same transpose, if any), so the module stores the weight in
/// bf16 and the kernel reads it without converting. Null when B is not a
/// plain (or transposed) constant global.
Value bf16WeightFor(IRRewriter &rewriter, Value b, SymbolTable &symbols) {
  Operation *def = b.getDefiningOp();
  std::optional<AffineMap> permutation;
  if (auto transpose = dyn_cast_or_null<memref::TransposeOp>(def)) {
    permutation = transpose.getPermutation();
    def = transpose.getIn().getDefiningOp();
  }
  auto get = dyn_cast_or_null<memref::GetGlobalOp>(def);
  if (!get)
    return nullptr;
  auto global = symbols.lookup<memref::GlobalOp>(get.getName());
  if (!global || !global.getConstant() || !global.getType().getElementType().isF32() ||
      !global.getType().getLayout().isIdentity())
    return nullptr;
  memref::GlobalOp copy = bf16GlobalFor(global, symbols);
  if (!copy)
    return nullptr;
  Value value = memref::GetGlobalOp::create(rewriter, get.getLoc(), copy.getType(),
                                            copy.getSymName());
  if (permutation)
    value = memref::TransposeOp::create(rewriter, get.getLoc(), value,
                                        AffineMapAttr::get(*permutation));
  return value;
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

    // The kernels take (A, B, C, flags) as strided memrefs; B is bf16 for
    // the *_bf16w kernels.
    auto declare = [&](StringRef name, int64_t rank, Type weightElement = nullptr) {
      Type m = anyStridedMemRef(ctx, rank);
      return hasten::declareRuntimeFunction(
          module, name, {m, anyStridedMemRef(ctx, rank, weightElement), m,
                         IntegerType::get(ctx, 32)});
    };

    IRRewriter rewriter(ctx);
    SymbolTable symbols(module);
    for (linalg::LinalgOp op : matmuls) {
      bool batched = isa<linalg::BatchMatmulOp>(op.getOperation());
      int64_t rank = batched ? 3 : 2;
      viewThroughConstantTranspose(rewriter, op);
      rewriter.setInsertionPoint(op);
      Location loc = op.getLoc();
      // bf16 weights are stored as bf16: half the bytes in the module, and
      // nothing to convert at load.
      Value bf16Weight = weights == "bf16" && isConstantWeight(op->getOperand(1))
                             ? bf16WeightFor(rewriter, op->getOperand(1), symbols)
                             : Value();
      func::FuncOp kernel =
          bf16Weight
              ? declare(batched ? "hasten_rt_batch_matmul_bf16w" : "hasten_rt_matmul_bf16w",
                        rank, BFloat16Type::get(ctx))
              : declare(batched ? "hasten_rt_batch_matmul_f32" : "hasten_rt_matmul_f32", rank);
      SmallVector<Value> args;
      for (auto [index, operand] : llvm::enumerate(op->getOperands()))
        args.push_back(index == 1 && bf16Weight
                           ? memref::CastOp::create(rewriter, loc,
                                                    anyStridedMemRef(ctx, rank,
                                                               BFloat16Type::get(ctx)),
                                                    bf16Weight)
                           : memref::CastOp::create(rewriter, loc, anyStridedMemRef(ctx, rank),
                                                    operand));
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
      Value oldWeight = op->getOperand(1);
      rewriter.eraseOp(op);
      // The f32 weight, now unread, leaves the module.
      if (bf16Weight)
        eraseIfUnused(rewriter, oldWeight, symbols);
    }
  }

  /// Erases a dead transpose/get_global chain and a global nobody reads.
  static void eraseIfUnused(IRRewriter &rewriter, Value value, SymbolTable &symbols) {
    Operation *def = value.getDefiningOp();
    while (def && def->use_empty() &&
           isa<memref::TransposeOp, memref::GetGlobalOp, memref::CastOp>(def)) {
      Operation *next = def->getNumOperands() ? def->getOperand(0).getDefiningOp() : nullptr;
      if (auto get = dyn_cast<memref::GetGlobalOp>(def)) {
        StringAttr name = get.getNameAttr().getAttr();
        rewriter.eraseOp(def);
        auto global = symbols.lookup<memref::GlobalOp>(name);
        if (global && SymbolTable::symbolKnownUseEmpty(global, global->getParentOp()))
          symbols.erase(global);
        return;
      }
      rewriter.eraseOp(def);
      def = next;
    }
  }
};
} // namespace
