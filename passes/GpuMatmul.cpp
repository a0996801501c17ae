//===- GpuMatmul.cpp - linalg matmuls as tiled GPU kernels ----------------===//
//
// The CUDA target's matmuls, on buffers (after bufferization): each block of
// kThreads threads computes a kTile x kTile tile of C, each thread a
// kMicro x kMicro piece of it in registers (the scf.for's iteration
// arguments); per kDepth-deep step of K the block stages the A and B tiles
// it needs in shared memory, so every element of A and B loaded from
// global memory serves kTile multiply-adds instead of one. Edges read zeros.
//
//===----------------------------------------------------------------------===//

#include "GpuKernelBuilder.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

namespace hasten {
#define GEN_PASS_DEF_GPUMATMUL
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;
using hasten::toF32;

namespace {

constexpr int64_t kTile = 64, kDepth = 16, kMicro = 4;
constexpr int64_t kThreads = (kTile / kMicro) * (kTile / kMicro); // 256

/// C (+)= A B for one matmul (batched: a leading batch dim on all three).
void lower(OpBuilder &b, linalg::LinalgOp op, bool batched) {
  Location loc = op.getLoc();
  MLIRContext *ctx = b.getContext();
  hasten::KernelBuilder kb{b, loc};
  b.setInsertionPoint(op);
  Value a = op.getDpsInputOperand(0)->get(), bm = op.getDpsInputOperand(1)->get();
  Value c = op.getDpsInitOperand(0)->get();
  int64_t first = batched ? 1 : 0;
  Value rows = memref::DimOp::create(b, loc, a, first);
  Value depth = memref::DimOp::create(b, loc, a, first + 1);
  Value cols = memref::DimOp::create(b, loc, bm, first + 1);
  Value batch = batched ? memref::DimOp::create(b, loc, a, 0).getResult() : kb.index(1);
  Value c0 = kb.index(0), c1 = kb.index(1), tile = kb.index(kTile);
  // An empty C is a launch with no blocks, which launches nothing (no
  // host-side guard: see MapParallelLoopsToGpu).
  auto launch = gpu::LaunchOp::create(b, loc, arith::CeilDivSIOp::create(b, loc, cols, tile),
                                      arith::CeilDivSIOp::create(b, loc, rows, tile), batch,
                                      kb.index(kThreads), c1, c1);
  auto shared = MemRefType::get({kDepth, kTile}, b.getF32Type(), MemRefLayoutAttrInterface{},
                                gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup));
  // A's tile transposed (k-major), so that a thread's kMicro rows at one k
  // are adjacent, like B's columns.
  Value aTile = launch.addWorkgroupAttribution(shared, loc);
  Value bTile = launch.addWorkgroupAttribution(shared, loc);
  b.setInsertionPointToEnd(&launch.getBody().front());

  Value tid = launch.getThreadIds().x;
  Value row0 = arith::MulIOp::create(b, loc, launch.getBlockIds().y, tile);
  Value col0 = arith::MulIOp::create(b, loc, launch.getBlockIds().x, tile);
  Value batchIndex = launch.getBlockIds().z;
  Value threadRow = arith::MulIOp::create(
      b, loc, arith::DivUIOp::create(b, loc, tid, kb.index(kTile / kMicro)), kb.index(kMicro));
  Value threadCol = arith::MulIOp::create(
      b, loc, arith::RemUIOp::create(b, loc, tid, kb.index(kTile / kMicro)), kb.index(kMicro));
  auto at = [&](Value i, Value j) {
    SmallVector<Value> index;
    if (batched)
      index.push_back(batchIndex);
    index.push_back(i);
    index.push_back(j);
    return index;
  };
  auto inside = [&](Value i, Value n, Value j, Value m) {
    return arith::AndIOp::create(
        b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, i, n),
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, j, m));
  };
  // Element e of a tile staged by thread tid: e = tid + s * kThreads.
  auto stage = [&](Value source, Value target, bool isA, Value k0) {
    for (int64_t s = 0; s < kTile * kDepth / kThreads; ++s) {
      Value e = arith::AddIOp::create(b, loc, tid, kb.index(s * kThreads));
      // A: kTile rows of kDepth (k fastest); B: kDepth rows of kTile.
      Value major = arith::DivUIOp::create(b, loc, e, kb.index(isA ? kDepth : kTile));
      Value minor = arith::RemUIOp::create(b, loc, e, kb.index(isA ? kDepth : kTile));
      Value i = arith::AddIOp::create(b, loc, isA ? row0 : k0, major);
      Value j = arith::AddIOp::create(b, loc, isA ? k0 : col0, minor);
      Value ok = isA ? inside(i, rows, j, depth) : inside(i, depth, j, cols);
      auto load = scf::IfOp::create(b, loc, TypeRange{b.getF32Type()}, ok, true);
      {
        OpBuilder::InsertionGuard g(b);
        b.setInsertionPointToStart(load.thenBlock());
        scf::YieldOp::create(b, loc,
                             toF32(b, loc, memref::LoadOp::create(b, loc, source, at(i, j))));
        b.setInsertionPointToStart(load.elseBlock());
        scf::YieldOp::create(b, loc, kb.f32(0.0f));
      }
      memref::StoreOp::create(b, loc, load.getResult(0), target,
                              isA ? ValueRange{minor, major} : ValueRange{major, minor});
    }
  };
  SmallVector<Value> zeros(kMicro * kMicro, kb.f32(0.0f));
  auto steps = kb.forLoop(c0, depth, kb.index(kDepth), zeros, [&](Value k0, ValueRange acc) {
    stage(a, aTile, /*isA=*/true, k0);
    stage(bm, bTile, /*isA=*/false, k0);
    gpu::BarrierOp::create(b, loc);
    auto inner = kb.forLoop(c0, kb.index(kDepth), c1, acc, [&](Value k, ValueRange sums) {
      SmallVector<Value> x, y, next;
      for (int64_t i = 0; i < kMicro; ++i) {
        x.push_back(memref::LoadOp::create(
            b, loc, aTile,
            ValueRange{k, arith::AddIOp::create(b, loc, threadRow, kb.index(i))}));
        y.push_back(memref::LoadOp::create(
            b, loc, bTile,
            ValueRange{k, arith::AddIOp::create(b, loc, threadCol, kb.index(i))}));
      }
      for (int64_t i = 0; i < kMicro; ++i)
        for (int64_t j = 0; j < kMicro; ++j)
          next.push_back(math::FmaOp::create(b, loc, x[i], y[j], sums[i * kMicro + j]));
      return next;
    });
    // Every thread is done with the tiles before the next step restages them.
    gpu::BarrierOp::create(b, loc);
    return SmallVector<Value>(inner.getResults());
  });
  // C += the thread's piece, inside the matrix.
  Type cElement = cast<MemRefType>(c.getType()).getElementType();
  for (int64_t i = 0; i < kMicro; ++i)
    for (int64_t j = 0; j < kMicro; ++j) {
      Value row = arith::AddIOp::create(b, loc, arith::AddIOp::create(b, loc, row0, threadRow),
                                        kb.index(i));
      Value col = arith::AddIOp::create(b, loc, arith::AddIOp::create(b, loc, col0, threadCol),
                                        kb.index(j));
      kb.ifThen(inside(row, rows, col, cols), [&] {
        Value old = toF32(b, loc, memref::LoadOp::create(b, loc, c, at(row, col)));
        Value sum = arith::AddFOp::create(b, loc, old, steps.getResult(i * kMicro + j));
        if (!cElement.isF32())
          sum = arith::TruncFOp::create(b, loc, cElement, sum);
        memref::StoreOp::create(b, loc, sum, c, at(row, col));
      });
    }
  gpu::TerminatorOp::create(b, loc);
  op->erase();
}

bool isFloatMemRef(Value v) {
  auto type = dyn_cast<MemRefType>(v.getType());
  return type && isa<FloatType>(type.getElementType());
}

/// Products with fewer rows than this (known statically: a decode step's
/// one token) stay with the generic kernel: one thread per output column
/// reads B coalesced, where a 64-row tile would compute masked rows.
constexpr int64_t kMinRows = 16;

bool fewRows(linalg::LinalgOp op, bool batched) {
  auto a = cast<MemRefType>(op.getDpsInputOperand(0)->get().getType());
  int64_t rows = a.getDimSize(batched ? 1 : 0);
  return !ShapedType::isDynamic(rows) && rows < kMinRows;
}

struct GpuMatmulPass : public hasten::impl::GpuMatmulBase<GpuMatmulPass> {
  void runOnOperation() override {
    SmallVector<std::pair<linalg::LinalgOp, bool>> matmuls;
    getOperation()->walk([&](linalg::LinalgOp op) {
      if (op->getParentOfType<gpu::LaunchOp>() || !op.hasPureBufferSemantics() ||
          !llvm::all_of(op->getOperands(), isFloatMemRef))
        return;
      if (auto mm = dyn_cast<linalg::MatmulOp>(op.getOperation());
          mm && mm.getIndexingMapsArray() == linalg::MatmulOp::getDefaultIndexingMaps(op.getContext()))
        matmuls.push_back({op, false});
      if (auto bmm = dyn_cast<linalg::BatchMatmulOp>(op.getOperation());
          bmm && bmm.getIndexingMapsArray() ==
                     linalg::BatchMatmulOp::getDefaultIndexingMaps(op.getContext()))
        matmuls.push_back({op, true});
    });
    OpBuilder b(&getContext());
    for (auto [op, batched] : matmuls)
      if (!fewRows(op, batched))
        lower(b, op, batched);
  }
};

} // namespace
