//===- GpuAttention.cpp - hasten.attention as a GPU kernel ----------------===//
//
// The CUDA target's attention: a gpu.launch per op, before bufferization
// (operands become buffers with bufferization.to_buffer and the result a
// fresh buffer read back as a tensor, as the runtime-call lowering does).
// One thread block per (query block, head, batch) and one query row per
// thread; the block stages K and V tiles in shared memory and every thread
// keeps its row's running max, sum and accumulator (FlashAttention-2's online
// softmax), so no q_len x kv_len buffer exists. The tile loop is uniform
// across the block (it depends only on the block's rows), so its barriers
// are reached by every thread.
//
// Barriers are calls of @hasten_gpu_barrier and the shared tiles allocas in
// workgroup memory until --hasten-finalize-gpu-kernels (after buffer
// deallocation, which refuses gpu.barrier and would give attribution
// arguments ownership arguments).
//
//===----------------------------------------------------------------------===//

#include "AttentionTiling.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <limits>

namespace hasten {
#define GEN_PASS_DEF_GPUATTENTION
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;
using namespace hasten;

namespace {

/// Static shared memory a kernel may use without opting in (48 KB), less
/// room for what else a block might need.
constexpr int64_t kSharedBudgetBytes = 40 * 1024;

Value toBuffer(OpBuilder &b, Location loc, Value tensor) {
  auto type = cast<RankedTensorType>(tensor.getType());
  SmallVector<int64_t> strides(type.getRank(), ShapedType::kDynamic);
  auto bufferType = MemRefType::get(
      type.getShape(), type.getElementType(),
      StridedLayoutAttr::get(b.getContext(), ShapedType::kDynamic, strides));
  return bufferization::ToBufferOp::create(b, loc, bufferType, tensor, /*read_only=*/true);
}

Value toF32(OpBuilder &b, Location loc, Value v) {
  if (v.getType().isF32())
    return v;
  return arith::ExtFOp::create(b, loc, b.getF32Type(), v);
}

Value fromF32(OpBuilder &b, Location loc, Value v, Type to) {
  if (to.isF32())
    return v;
  return arith::TruncFOp::create(b, loc, to, v);
}

MemRefType onChip(int64_t rows, int64_t cols, gpu::AddressSpace space, MLIRContext *ctx) {
  SmallVector<int64_t> shape;
  if (rows > 0)
    shape.push_back(rows);
  shape.push_back(cols);
  return MemRefType::get(shape, Float32Type::get(ctx), MemRefLayoutAttrInterface{},
                         gpu::AddressSpaceAttr::get(ctx, space));
}

/// Why the kernel cannot take `op`, or "" when it can.
std::string unsupported(AttentionOp op) {
  auto q = cast<RankedTensorType>(op.getQuery().getType());
  auto v = cast<RankedTensorType>(op.getValue().getType());
  if (q.isDynamicDim(3) || v.isDynamicDim(3))
    return "its head dim is dynamic";
  if (!op.getEffectiveScale())
    return "its scale is unknown";
  if (Value mask = op.getMask())
    if (cast<RankedTensorType>(mask.getType()).getRank() > 4)
      return "its mask has more than 4 dims";
  return "";
}

struct Kernel {
  AttentionOp op;
  int64_t threads, tileKv, headDim, valueDim;
};

/// The function a kernel calls where it needs a barrier (see the top).
func::FuncOp barrierFunction(ModuleOp module) {
  if (auto fn = module.lookupSymbol<func::FuncOp>(kGpuBarrierFunction))
    return fn;
  OpBuilder b(module.getBodyRegion());
  b.setInsertionPointToStart(module.getBody());
  auto fn = func::FuncOp::create(b, module.getLoc(), kGpuBarrierFunction,
                                 b.getFunctionType({}, {}));
  fn.setPrivate();
  return fn;
}

void lower(OpBuilder &b, const Kernel &k) {
  AttentionOp op = k.op;
  MLIRContext *ctx = b.getContext();
  func::FuncOp barrier = barrierFunction(op->getParentOfType<ModuleOp>());
  Location loc = op.getLoc();
  b.setInsertionPoint(op);
  Type f32 = b.getF32Type();
  auto resultType = cast<RankedTensorType>(op.getType());
  auto cst = [&](int64_t v) { return arith::ConstantIndexOp::create(b, loc, v).getResult(); };
  Value c0 = cst(0), c1 = cst(1);

  Value q = toBuffer(b, loc, op.getQuery());
  Value key = toBuffer(b, loc, op.getKey());
  Value value = toBuffer(b, loc, op.getValue());
  Value mask = op.getMask() ? toBuffer(b, loc, op.getMask()) : Value();
  Value batch = memref::DimOp::create(b, loc, q, 0);
  Value qLen = memref::DimOp::create(b, loc, q, 2);
  Value kvLen = memref::DimOp::create(b, loc, key, 2);
  int64_t heads = op.getNumHeads(), kvHeads = op.getNumKvHeads();
  SmallVector<Value> dynamicSizes;
  for (int64_t d = 0; d < 4; ++d)
    if (resultType.isDynamicDim(d))
      dynamicSizes.push_back(memref::DimOp::create(b, loc, d == 3 ? value : q, d));
  Value out = memref::AllocOp::create(
      b, loc, MemRefType::get(resultType.getShape(), resultType.getElementType()), dynamicSizes);

  // A mask dim of extent 1 broadcasts (numpy-style, aligned right): its
  // index is 0 whatever the full index.
  SmallVector<Value> maskBroadcast;
  int64_t maskRank = mask ? cast<MemRefType>(mask.getType()).getRank() : 0;
  for (int64_t d = 0; d < maskRank; ++d)
    maskBroadcast.push_back(arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                                  memref::DimOp::create(b, loc, mask, d), c1));

  // Causal: key j is visible to query row i when j <= i + (kv_len - q_len).
  Value diagonal = arith::SubIOp::create(b, loc, kvLen, qLen);
  Value threads = cst(k.threads);
  Value queryBlocks = arith::CeilDivSIOp::create(b, loc, qLen, threads);
  Value work = arith::MulIOp::create(b, loc, queryBlocks, batch);
  Value any = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, work, c0);
  auto guard = scf::IfOp::create(b, loc, any, /*withElseRegion=*/false);
  b.setInsertionPointToStart(guard.thenBlock());
  auto launch = gpu::LaunchOp::create(b, loc, queryBlocks, cst(heads), batch, threads, c1, c1);
  b.setInsertionPointToEnd(&launch.getBody().front());
  auto onChipBuffer = [&](int64_t rows, int64_t cols, gpu::AddressSpace space) {
    return memref::AllocaOp::create(b, loc, onChip(rows, cols, space, ctx)).getResult();
  };
  Value keysTile = onChipBuffer(k.tileKv, k.headDim, gpu::AddressSpace::Workgroup);
  Value valuesTile = onChipBuffer(k.tileKv, k.valueDim, gpu::AddressSpace::Workgroup);
  // A thread's own arrays: local memory.
  auto privateBuffer = [&](int64_t size) {
    return memref::AllocaOp::create(b, loc, MemRefType::get({size}, f32)).getResult();
  };
  Value queryRow = privateBuffer(k.headDim);
  Value accumulator = privateBuffer(k.valueDim);
  Value scores = privateBuffer(k.tileKv);

  Value tid = launch.getThreadIds().x;
  Value blockIndex = launch.getBlockIds().x;
  Value head = launch.getBlockIds().y;
  Value batchIndex = launch.getBlockIds().z;
  Value kvHead = arith::DivUIOp::create(b, loc, head, cst(heads / kvHeads));
  Value firstRow = arith::MulIOp::create(b, loc, blockIndex, threads);
  Value row = arith::AddIOp::create(b, loc, firstRow, tid);
  Value valid = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, row, qLen);
  Value headDim = cst(k.headDim), valueDim = cst(k.valueDim), tileKv = cst(k.tileKv);
  Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f));
  Value negInf = arith::ConstantOp::create(
      b, loc, b.getF32FloatAttr(-std::numeric_limits<float>::infinity()));
  Value scale = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(*op.getEffectiveScale()));

  auto forLoop = [&](Value lb, Value ub, Value step, ValueRange init,
                     function_ref<SmallVector<Value>(Value, ValueRange)> body) {
    auto loop = scf::ForOp::create(b, loc, lb, ub, step, init);
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(loop.getBody());
    SmallVector<Value> yielded = body(loop.getInductionVar(), loop.getRegionIterArgs());
    if (loop.getBody()->mightHaveTerminator())
      loop.getBody()->getTerminator()->erase();
    b.setInsertionPointToEnd(loop.getBody());
    scf::YieldOp::create(b, loc, yielded);
    return loop;
  };
  auto ifThen = [&](Value cond, function_ref<void()> body) {
    auto i = scf::IfOp::create(b, loc, cond, /*withElseRegion=*/false);
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(i.thenBlock());
    body();
  };

  // The row's query, scaled once, and a zero accumulator.
  ifThen(valid, [&] {
    forLoop(c0, headDim, c1, {}, [&](Value d, ValueRange) {
      Value x = toF32(b, loc, memref::LoadOp::create(b, loc, q,
                                                     ValueRange{batchIndex, head, row, d}));
      memref::StoreOp::create(b, loc, arith::MulFOp::create(b, loc, x, scale), queryRow, d);
      return SmallVector<Value>{};
    });
    forLoop(c0, valueDim, c1, {}, [&](Value d, ValueRange) {
      memref::StoreOp::create(b, loc, zero, accumulator, d);
      return SmallVector<Value>{};
    });
  });

  // The block's keys: with causal, up to what its last row may see.
  Value end = kvLen;
  if (op.getCausal()) {
    Value lastRow = arith::SubIOp::create(
        b, loc, arith::MinSIOp::create(b, loc, arith::AddIOp::create(b, loc, firstRow, threads), qLen),
        c1);
    Value seen = arith::AddIOp::create(b, loc, arith::AddIOp::create(b, loc, lastRow, diagonal), c1);
    end = arith::MaxSIOp::create(b, loc, arith::MinSIOp::create(b, loc, seen, kvLen), c0);
  }

  auto tiles = forLoop(c0, end, tileKv, {negInf, zero}, [&](Value start, ValueRange carried) {
    Value m = carried[0], l = carried[1];
    Value count = arith::MinSIOp::create(b, loc, tileKv, arith::SubIOp::create(b, loc, end, start));
    // Stage the tile: thread t loads elements t, t + threads, ...; rows past
    // the keys read zeros.
    auto stage = [&](Value source, Value tile, Value width) {
      Value elements = arith::MulIOp::create(b, loc, tileKv, width);
      forLoop(tid, elements, threads, {}, [&](Value e, ValueRange) {
        Value j = arith::DivUIOp::create(b, loc, e, width);
        Value d = arith::RemUIOp::create(b, loc, e, width);
        Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, j, count);
        auto load = scf::IfOp::create(b, loc, TypeRange{f32}, inside, /*withElseRegion=*/true);
        {
          OpBuilder::InsertionGuard g(b);
          b.setInsertionPointToStart(load.thenBlock());
          Value x = memref::LoadOp::create(
              b, loc, source,
              ValueRange{batchIndex, kvHead, arith::AddIOp::create(b, loc, start, j), d});
          scf::YieldOp::create(b, loc, toF32(b, loc, x));
          b.setInsertionPointToStart(load.elseBlock());
          scf::YieldOp::create(b, loc, zero);
        }
        memref::StoreOp::create(b, loc, load.getResult(0), tile, ValueRange{j, d});
        return SmallVector<Value>{};
      });
    };
    stage(key, keysTile, headDim);
    stage(value, valuesTile, valueDim);
    func::CallOp::create(b, loc, barrier);

    auto step = scf::IfOp::create(b, loc, TypeRange{f32, f32}, valid, /*withElseRegion=*/true);
    {
      OpBuilder::InsertionGuard g(b);
      b.setInsertionPointToStart(step.elseBlock());
      scf::YieldOp::create(b, loc, ValueRange{m, l});
      b.setInsertionPointToStart(step.thenBlock());
      // Scores of the row against the tile, and their maximum.
      auto scoring = forLoop(c0, count, c1, {m}, [&](Value j, ValueRange running) {
        auto dot = forLoop(c0, headDim, c1, {zero}, [&](Value d, ValueRange sum) {
          Value x = memref::LoadOp::create(b, loc, queryRow, d);
          Value y = memref::LoadOp::create(b, loc, keysTile, ValueRange{j, d});
          return SmallVector<Value>{math::FmaOp::create(b, loc, x, y, sum[0])};
        });
        Value s = dot.getResult(0);
        Value keyIndex = arith::AddIOp::create(b, loc, start, j);
        if (op.getCausal()) {
          Value beyond = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, keyIndex,
                                               arith::AddIOp::create(b, loc, row, diagonal));
          s = arith::SelectOp::create(b, loc, beyond, negInf, s);
        }
        if (mask) {
          Value full[4] = {batchIndex, head, row, keyIndex};
          SmallVector<Value> index;
          for (int64_t d = 0; d < maskRank; ++d)
            index.push_back(
                arith::SelectOp::create(b, loc, maskBroadcast[d], c0, full[4 - maskRank + d]));
          Value bias = memref::LoadOp::create(b, loc, mask, index);
          if (bias.getType().isInteger(1))
            s = arith::SelectOp::create(b, loc, bias, s, negInf);
          else
            s = arith::AddFOp::create(b, loc, s, toF32(b, loc, bias));
        }
        memref::StoreOp::create(b, loc, s, scores, j);
        return SmallVector<Value>{arith::MaximumFOp::create(b, loc, running[0], s)};
      });
      Value newMax = scoring.getResult(0);
      // A row that has seen only masked keys keeps -inf; exponents then use
      // 0 so that exp(-inf - 0) = 0 rather than NaN.
      Value allMasked =
          arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, newMax, negInf);
      Value safeMax = arith::SelectOp::create(b, loc, allMasked, zero, newMax);
      Value correction = math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, m, safeMax));
      forLoop(c0, valueDim, c1, {}, [&](Value d, ValueRange) {
        Value a = memref::LoadOp::create(b, loc, accumulator, d);
        memref::StoreOp::create(b, loc, arith::MulFOp::create(b, loc, a, correction),
                                accumulator, d);
        return SmallVector<Value>{};
      });
      auto summing = forLoop(c0, count, c1, {zero}, [&](Value j, ValueRange sum) {
        Value p = math::ExpOp::create(
            b, loc, arith::SubFOp::create(b, loc, memref::LoadOp::create(b, loc, scores, j),
                                          safeMax));
        forLoop(c0, valueDim, c1, {}, [&](Value d, ValueRange) {
          Value a = memref::LoadOp::create(b, loc, accumulator, d);
          Value v = memref::LoadOp::create(b, loc, valuesTile, ValueRange{j, d});
          memref::StoreOp::create(b, loc, math::FmaOp::create(b, loc, p, v, a), accumulator, d);
          return SmallVector<Value>{};
        });
        return SmallVector<Value>{arith::AddFOp::create(b, loc, sum[0], p)};
      });
      Value newSum = math::FmaOp::create(b, loc, l, correction, summing.getResult(0));
      scf::YieldOp::create(b, loc, ValueRange{newMax, newSum});
    }
    // Every thread is done with the tile before the next one overwrites it.
    func::CallOp::create(b, loc, barrier);
    return SmallVector<Value>{step.getResult(0), step.getResult(1)};
  });

  Value rowSum = tiles.getResult(1);
  Type resultElement = resultType.getElementType();
  ifThen(valid, [&] {
    forLoop(c0, valueDim, c1, {}, [&](Value d, ValueRange) {
      Value a = memref::LoadOp::create(b, loc, accumulator, d);
      Value o = fromF32(b, loc, arith::DivFOp::create(b, loc, a, rowSum), resultElement);
      memref::StoreOp::create(b, loc, o, out, ValueRange{batchIndex, head, row, d});
      return SmallVector<Value>{};
    });
  });
  gpu::TerminatorOp::create(b, loc);

  b.setInsertionPointAfter(guard);
  Value result = bufferization::ToTensorOp::create(b, loc, resultType, out,
                                                   /*restrict=*/true, /*writable=*/true);
  op.getResult().replaceAllUsesWith(result);
  op.erase();
}

struct GpuAttentionPass : public hasten::impl::GpuAttentionBase<GpuAttentionPass> {
  using GpuAttentionBase::GpuAttentionBase;

  void runOnOperation() override {
    std::string error;
    FailureOr<AttentionTarget> planTarget = getAttentionTarget(target, 0, 0, 0, error);
    if (failed(planTarget) || planTarget->name.compare(0, 3, "sm_") != 0) {
      getOperation()->emitError("hasten-gpu-attention: ")
          << (error.empty() ? "'" + target + "' is not a GPU target (sm_70, sm_80 or sm_90)"
                            : error);
      return signalPassFailure();
    }
    SmallVector<AttentionOp> ops;
    getOperation()->walk([&](AttentionOp op) { ops.push_back(op); });
    OpBuilder b(&getContext());
    for (AttentionOp op : ops) {
      std::string why = unsupported(op);
      if (!why.empty()) {
        op->emitRemark("left to --hasten-tile-attention: ") << why;
        continue;
      }
      AttentionTilingAttr tiling = op.getTilingAttr();
      if (!tiling) {
        tiling = planAttentionTiling(op, *planTarget);
        op.setTilingAttr(tiling);
      }
      Kernel k;
      k.op = op;
      k.headDim = cast<RankedTensorType>(op.getQuery().getType()).getDimSize(3);
      k.valueDim = cast<RankedTensorType>(op.getValue().getType()).getDimSize(3);
      // One thread per query row: whole warps, at most 256 per block.
      k.threads = std::clamp<int64_t>((tiling.getBlockQ() + 31) / 32 * 32, 32, 256);
      k.tileKv = std::max<int64_t>(tiling.getTileKv(), 1);
      while (k.tileKv > 8 && k.tileKv * (k.headDim + k.valueDim) * 4 > kSharedBudgetBytes)
        k.tileKv /= 2;
      if (k.tileKv * (k.headDim + k.valueDim) * 4 > kSharedBudgetBytes) {
        op->emitRemark("left to --hasten-tile-attention: head dims ")
            << k.headDim << " and " << k.valueDim
            << " do not fit 8 keys of K and V in static shared memory";
        continue;
      }
      lower(b, k);
    }
  }
};

} // namespace
