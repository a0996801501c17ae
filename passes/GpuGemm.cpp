//===- GpuGemm.cpp - the CUDA target's matmuls on cuBLASLt -----------------===//
//
// A generated kernel does not compete with cuBLASLt's tensor-core GEMMs, so
// the CUDA target hands each matmul on buffers to the runtime's library
// product (hasten.gpu_gemm), folding into it what the library does for
// free: the zero fill it may overwrite instead of accumulating into, the
// bias add after it (cuBLASLt's bias epilogue), and a transposed copy of a
// weight (a transposed operand). With bf16 or f16 precision, constant
// weights are stored narrowed at compile time and other operands narrowed
// by a conversion kernel before the product.
//
//===----------------------------------------------------------------------===//

#include "MatmulOperands.h"
#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/Dominance.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

namespace hasten {
#define GEN_PASS_DEF_GPUGEMM
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

/// The matmuls the library takes: linalg.matmul and batch_matmul with
/// their default maps, on float buffers, outside kernels.
bool isLibraryMatmul(linalg::LinalgOp op) {
  if (op->getParentOfType<gpu::LaunchOp>() || !op.hasPureBufferSemantics())
    return false;
  MLIRContext *ctx = op->getContext();
  bool plain = false;
  if (auto mm = dyn_cast<linalg::MatmulOp>(op.getOperation()))
    plain = mm.getIndexingMapsArray() == linalg::MatmulOp::getDefaultIndexingMaps(ctx);
  if (auto bmm = dyn_cast<linalg::BatchMatmulOp>(op.getOperation()))
    plain = bmm.getIndexingMapsArray() == linalg::BatchMatmulOp::getDefaultIndexingMaps(ctx);
  if (!plain)
    return false;
  auto elementOf = [&](unsigned i) {
    return cast<MemRefType>(op->getOperand(i).getType()).getElementType();
  };
  Type a = elementOf(0), b = elementOf(1), c = elementOf(2);
  auto supported = [](Type t) { return t.isF32() || t.isBF16() || t.isF16(); };
  return supported(a) && a == b && (c.isF32() || c == a);
}

/// Values that are the whole of `buffer` under another shape (views that
/// drop or add nothing), so a bias add on one of them adds to the product.
bool isWholeView(Operation *op) {
  return isa<memref::ExpandShapeOp, memref::CollapseShapeOp, memref::CastOp>(op);
}

/// `out = out + bias[j]` on (a reshape of) the product, with the bias one
/// value per column: the generic the importer writes for a Gemm's C or a
/// MatMul's Add. Returns the bias.
Value biasOf(linalg::GenericOp add, const llvm::SmallPtrSetImpl<Value> &product) {
  if (add.getNumDpsInputs() != 2 || add.getNumDpsInits() != 1 ||
      add.getNumReductionLoops() != 0 || !add.hasPureBufferSemantics())
    return nullptr;
  Value in = add.getDpsInputOperand(0)->get(), bias = add.getDpsInputOperand(1)->get();
  Value out = add.getDpsInitOperand(0)->get();
  if (!product.contains(in) || in != out)
    return nullptr;
  SmallVector<AffineMap> maps = add.getIndexingMapsArray();
  unsigned rank = add.getNumLoops();
  if (!maps[0].isIdentity() || !maps[2].isIdentity())
    return nullptr;
  auto biasType = dyn_cast<MemRefType>(bias.getType());
  if (!biasType || biasType.getRank() != 1 ||
      maps[1] != AffineMap::get(rank, 0, getAffineDimExpr(rank - 1, add.getContext())))
    return nullptr;
  Block &body = add.getRegion().front();
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  auto sum = yield.getValues()[0].getDefiningOp<arith::AddFOp>();
  if (!sum || &body.front() != sum.getOperation())
    return nullptr;
  Value x = body.getArgument(0), y = body.getArgument(1);
  if (!((sum.getLhs() == x && sum.getRhs() == y) || (sum.getLhs() == y && sum.getRhs() == x)))
    return nullptr;
  return bias;
}

/// The bias add that is the next thing to touch `op`'s output (through
/// reshapes only), or null.
linalg::GenericOp biasAddAfter(linalg::LinalgOp op, Value &bias) {
  llvm::SmallPtrSet<Value, 4> product;
  product.insert(op.getDpsInits()[0]);
  for (Operation *next = op->getNextNode(); next; next = next->getNextNode()) {
    bool uses = llvm::any_of(next->getOperands(), [&](Value v) { return product.contains(v); });
    if (!uses) {
      // Nothing between may touch memory the product could alias but
      // through a value we track: ops that read or write memory end it.
      if (!isMemoryEffectFree(next) && !isa<memref::DeallocOp, memref::AllocOp>(next) &&
          !isa<ViewLikeOpInterface>(next))
        return nullptr;
      continue;
    }
    if (isWholeView(next)) {
      product.insert(next->getResult(0));
      continue;
    }
    auto add = dyn_cast<linalg::GenericOp>(next);
    if (!add || !(bias = biasOf(add, product)))
      return nullptr;
    auto outType = cast<MemRefType>(op.getDpsInits()[0].getType());
    if (cast<MemRefType>(bias.getType()).getElementType() != outType.getElementType())
      return nullptr;
    return add;
  }
  return nullptr;
}

/// `value` in `element`: a narrowed copy of the constant weight it views
/// (through one transpose), else a conversion into a new buffer, freed
/// after `user`.
Value narrowed(OpBuilder &b, Value value, FloatType element, Operation *user,
               SymbolTable &symbols) {
  Location loc = value.getLoc();
  auto type = cast<MemRefType>(value.getType());
  if (type.getElementType() == element)
    return value;
  // A constant weight, directly or through memref.transpose.
  Value source = value;
  memref::TransposeOp transpose = source.getDefiningOp<memref::TransposeOp>();
  if (transpose)
    source = transpose.getIn();
  if (auto get = source.getDefiningOp<memref::GetGlobalOp>()) {
    auto global = symbols.lookup<memref::GlobalOp>(get.getName());
    if (global && global.getConstant() && global.getType().getLayout().isIdentity())
      if (memref::GlobalOp copy = hasten::narrowedGlobalFor(global, element, symbols)) {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(get);
        Value narrow = memref::GetGlobalOp::create(b, loc, copy.getType(), copy.getSymName());
        if (transpose) {
          b.setInsertionPoint(transpose);
          narrow = memref::TransposeOp::create(b, loc, narrow, transpose.getPermutationAttr());
        }
        return narrow;
      }
  }
  // Anything else converts on the device: one kernel over its elements.
  SmallVector<Value> sizes;
  for (int64_t i = 0; i < type.getRank(); ++i)
    if (type.isDynamicDim(i))
      sizes.push_back(memref::DimOp::create(b, loc, value, i));
  auto copyType = MemRefType::get(type.getShape(), element);
  Value copy = memref::AllocOp::create(b, loc, copyType, sizes);
  SmallVector<AffineMap> maps(2, b.getMultiDimIdentityMap(type.getRank()));
  SmallVector<utils::IteratorType> iterators(type.getRank(), utils::IteratorType::parallel);
  linalg::GenericOp::create(b, loc, ValueRange{value}, ValueRange{copy}, maps, iterators,
                            [&](OpBuilder &nb, Location nl, ValueRange args) {
                              Value x = args[0];
                              if (x.getType() != element)
                                x = arith::TruncFOp::create(nb, nl, element, x);
                              linalg::YieldOp::create(nb, nl, x);
                            });
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointAfter(user);
  memref::DeallocOp::create(b, loc, copy);
  return copy;
}

struct GpuGemmPass : public hasten::impl::GpuGemmBase<GpuGemmPass> {
  using GpuGemmBase::GpuGemmBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    FloatType narrow;
    if (precision == "bf16")
      narrow = BFloat16Type::get(ctx);
    else if (precision == "f16")
      narrow = Float16Type::get(ctx);
    else if (precision != "f32" && precision != "tf32") {
      module.emitError("--hasten-gpu-gemm: precision must be f32, tf32, bf16 or f16, got '")
          << precision << "'";
      return signalPassFailure();
    }
    SmallVector<linalg::LinalgOp> matmuls;
    module.walk([&](linalg::LinalgOp op) {
      if (isLibraryMatmul(op))
        matmuls.push_back(op);
    });
    SymbolTable symbols(module);
    IRRewriter rewriter(ctx);
    DominanceInfo dominance(module);
    for (linalg::LinalgOp op : matmuls) {
      // A transposed copy of a weight becomes a transposed view of it.
      hasten::viewThroughConstantTranspose(rewriter, op);
      bool accumulate = true;
      if (linalg::FillOp fill = hasten::zeroFillBefore(op)) {
        rewriter.eraseOp(fill);
        accumulate = false;
      }
      // The bias joins the product when it is there already (a weight).
      Value bias;
      linalg::GenericOp biasAdd = biasAddAfter(op, bias);
      if (biasAdd && !dominance.properlyDominates(bias, op)) {
        biasAdd = nullptr;
        bias = nullptr;
      }
      rewriter.setInsertionPoint(op);
      Value lhs = op->getOperand(0), rhs = op->getOperand(1), out = op->getOperand(2);
      Type element = cast<MemRefType>(lhs.getType()).getElementType();
      if (narrow && element.isF32()) {
        lhs = narrowed(rewriter, lhs, narrow, op, symbols);
        rhs = narrowed(rewriter, rhs, narrow, op, symbols);
      }
      hasten::GpuGemmOp::create(rewriter, op.getLoc(), /*asyncToken=*/Type(),
                                            ValueRange{}, lhs, rhs, bias, out, accumulate,
                                            precision == "tf32" && element.isF32());
      if (biasAdd)
        rewriter.eraseOp(biasAdd);
      Value wideLhs = op->getOperand(0), wideRhs = op->getOperand(1);
      rewriter.eraseOp(op);
      // The f32 weights a narrowed copy replaced, when nothing else reads
      // them: the module stores only the copy.
      for (Value replaced : {wideLhs, wideRhs})
        eraseUnusedWeight(rewriter, replaced, symbols);
    }
  }

  void eraseUnusedWeight(IRRewriter &rewriter, Value value, SymbolTable &symbols) {
    Operation *def = value.getDefiningOp();
    if (!def || !value.use_empty() || !isa<memref::TransposeOp, memref::GetGlobalOp>(def))
      return;
    Value source = isa<memref::TransposeOp>(def) ? def->getOperand(0) : Value();
    auto get = dyn_cast<memref::GetGlobalOp>(def);
    rewriter.eraseOp(def);
    if (source)
      return eraseUnusedWeight(rewriter, source, symbols);
    auto global = symbols.lookup<memref::GlobalOp>(get.getName());
    if (global && SymbolTable::symbolKnownUseEmpty(global, getOperation()))
      symbols.erase(global);
  }
};

} // namespace
