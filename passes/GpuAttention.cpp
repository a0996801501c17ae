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

#include "AttentionCalls.h"
#include "AttentionTiling.h"
#include "GpuKernelBuilder.h"
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
  int64_t threads, tileKv, headDim, valueDim, kvSplits;
};

/// Threads of a decode block, and the warp size its merge shuffles over.
constexpr int64_t kDecodeThreads = 128, kWarp = 32;

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

/// The attention kernels' helpers on top of the loop builders.
struct KernelBuilder : hasten::KernelBuilder {
  /// exp(x - max), with a max of -inf (nothing seen but masked keys) read
  /// as 0 so that exp(-inf - 0) = 0 rather than NaN.
  Value safeMax(Value max) {
    Value negInf = f32(-std::numeric_limits<float>::infinity());
    Value allMasked = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, max, negInf);
    return arith::SelectOp::create(b, loc, allMasked, f32(0.0f), max);
  }
  Value expMinus(Value x, Value safe) {
    return math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, x, safe));
  }
  /// The mask at (batch, head, row, key): added, or -inf where false.
  Value applyMask(Value score, Value mask, ArrayRef<Value> broadcast, ArrayRef<Value> full) {
    if (!mask)
      return score;
    int64_t rank = cast<MemRefType>(mask.getType()).getRank();
    SmallVector<Value> at;
    for (int64_t d = 0; d < rank; ++d)
      at.push_back(arith::SelectOp::create(b, loc, broadcast[d], index(0), full[4 - rank + d]));
    Value bias = memref::LoadOp::create(b, loc, mask, at);
    if (bias.getType().isInteger(1))
      return arith::SelectOp::create(b, loc, bias, score,
                                     f32(-std::numeric_limits<float>::infinity()));
    return arith::AddFOp::create(b, loc, score, toF32(b, loc, bias));
  }
};

/// The op's operands as buffers, its dims, the output buffer and the mask's
/// broadcast dims, built before the op.
struct Operands {
  Value q, key, value, mask, batch, qLen, kvLen, out;
  SmallVector<Value> maskBroadcast;
  func::FuncOp barrier;
};

Operands prepare(OpBuilder &b, AttentionOp op) {
  Location loc = op.getLoc();
  b.setInsertionPoint(op);
  auto resultType = cast<RankedTensorType>(op.getType());
  Operands o;
  o.barrier = barrierFunction(op->getParentOfType<ModuleOp>());
  o.q = readOnlyBuffer(b, loc, op.getQuery());
  o.key = readOnlyBuffer(b, loc, op.getKey());
  o.value = readOnlyBuffer(b, loc, op.getValue());
  o.mask = op.getMask() ? readOnlyBuffer(b, loc, op.getMask()) : Value();
  o.batch = memref::DimOp::create(b, loc, o.q, 0);
  o.qLen = memref::DimOp::create(b, loc, o.q, 2);
  o.kvLen = memref::DimOp::create(b, loc, o.key, 2);
  SmallVector<Value> dynamicSizes;
  for (int64_t d = 0; d < 4; ++d)
    if (resultType.isDynamicDim(d))
      dynamicSizes.push_back(memref::DimOp::create(b, loc, d == 3 ? o.value : o.q, d));
  o.out = memref::AllocOp::create(
      b, loc, MemRefType::get(resultType.getShape(), resultType.getElementType()), dynamicSizes);
  // A mask dim of extent 1 broadcasts (numpy-style, aligned right): its
  // index is 0 whatever the full index.
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  int64_t maskRank = o.mask ? cast<MemRefType>(o.mask.getType()).getRank() : 0;
  for (int64_t d = 0; d < maskRank; ++d)
    o.maskBroadcast.push_back(arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::eq, memref::DimOp::create(b, loc, o.mask, d), one));
  return o;
}

/// The op's result is the output buffer, once the kernels have run.
void finish(OpBuilder &b, AttentionOp op, const Operands &o) {
  Value result = bufferization::ToTensorOp::create(b, op.getLoc(), op.getType(), o.out,
                                                   /*restrict=*/true, /*writable=*/true);
  op.getResult().replaceAllUsesWith(result);
  op.erase();
}

/// Prefill: one thread per query row (see the top of the file).
void lowerPrefill(OpBuilder &b, const Kernel &k, const Operands &o) {
  AttentionOp op = k.op;
  MLIRContext *ctx = b.getContext();
  Location loc = op.getLoc();
  Type f32 = b.getF32Type();
  auto resultType = cast<RankedTensorType>(op.getType());
  auto cst = [&](int64_t v) { return arith::ConstantIndexOp::create(b, loc, v).getResult(); };
  Value c0 = cst(0), c1 = cst(1);
  Value q = o.q, key = o.key, value = o.value, mask = o.mask, batch = o.batch, qLen = o.qLen,
        kvLen = o.kvLen, out = o.out;
  func::FuncOp barrier = o.barrier;
  ArrayRef<Value> maskBroadcast = o.maskBroadcast;
  int64_t heads = op.getNumHeads(), kvHeads = op.getNumKvHeads();

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

  KernelBuilder kb{{b, loc}};
  auto forLoop = [&](Value lb, Value ub, Value step, ValueRange init,
                     function_ref<SmallVector<Value>(Value, ValueRange)> body) {
    return kb.forLoop(lb, ub, step, init, body);
  };
  auto ifThen = [&](Value cond, function_ref<void()> body) { kb.ifThen(cond, body); };

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
        s = kb.applyMask(s, mask, maskBroadcast, {batchIndex, head, row, keyIndex});
        memref::StoreOp::create(b, loc, s, scores, j);
        return SmallVector<Value>{arith::MaximumFOp::create(b, loc, running[0], s)};
      });
      Value newMax = scoring.getResult(0);
      Value safeMax = kb.safeMax(newMax);
      Value correction = kb.expMinus(m, safeMax);
      forLoop(c0, valueDim, c1, {}, [&](Value d, ValueRange) {
        Value a = memref::LoadOp::create(b, loc, accumulator, d);
        memref::StoreOp::create(b, loc, arith::MulFOp::create(b, loc, a, correction),
                                accumulator, d);
        return SmallVector<Value>{};
      });
      auto summing = forLoop(c0, count, c1, {zero}, [&](Value j, ValueRange sum) {
        Value p = kb.expMinus(memref::LoadOp::create(b, loc, scores, j), safeMax);
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
}

/// One-query decode (flash-decoding): the keys split into `kv_splits`
/// parts, one block of kDecodeThreads per (part, head, batch). Thread t
/// walks the part's keys t, t + 128, ... with its own online softmax (its
/// max, sum and accumulator); the warp merges its lanes' states with
/// butterfly shuffles, the block its warps' through shared memory, and the
/// part's (accumulator, max, sum) go to a partials buffer. A second kernel,
/// one thread per output element of a (head, batch), merges the parts by
/// log-sum-exp. One query at the end of the keys sees them all, so causal
/// masks nothing here.
void lowerDecode(OpBuilder &b, const Kernel &k, const Operands &o) {
  AttentionOp op = k.op;
  MLIRContext *ctx = b.getContext();
  Location loc = op.getLoc();
  KernelBuilder kb{{b, loc}};
  Type f32 = b.getF32Type();
  Type resultElement = cast<RankedTensorType>(op.getType()).getElementType();
  int64_t heads = op.getNumHeads(), kvHeads = op.getNumKvHeads();
  int64_t warps = kDecodeThreads / kWarp, valueDim = k.valueDim, splits = k.kvSplits;
  Value c0 = kb.index(0), c1 = kb.index(1), threads = kb.index(kDecodeThreads);
  Value headDim = kb.index(k.headDim), valueDims = kb.index(valueDim);
  Value negInf = kb.f32(-std::numeric_limits<float>::infinity()), zero = kb.f32(0.0f);
  // Per (batch, head, part): the accumulator, then the max and the sum.
  Value partials = memref::AllocOp::create(
      b, loc, MemRefType::get({ShapedType::kDynamic, heads, splits, valueDim + 2}, f32),
      ValueRange{o.batch});
  Value any = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, o.batch, c0);
  auto guard = scf::IfOp::create(b, loc, any, /*withElseRegion=*/false);
  b.setInsertionPointToStart(guard.thenBlock());
  Value chunk = arith::CeilDivSIOp::create(b, loc, o.kvLen, kb.index(splits));

  // The parts.
  auto launch = gpu::LaunchOp::create(b, loc, kb.index(splits), kb.index(heads), o.batch,
                                      threads, c1, c1);
  b.setInsertionPointToEnd(&launch.getBody().front());
  auto workgroup = [&](ArrayRef<int64_t> shape) {
    return memref::AllocaOp::create(
               b, loc,
               MemRefType::get(shape, f32, MemRefLayoutAttrInterface{},
                               gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup)))
        .getResult();
  };
  Value queryTile = workgroup({k.headDim});
  Value warpMax = workgroup({warps}), warpSum = workgroup({warps});
  Value warpAcc = workgroup({warps, valueDim});
  Value accumulator = memref::AllocaOp::create(b, loc, MemRefType::get({valueDim}, f32));
  Value tid = launch.getThreadIds().x, part = launch.getBlockIds().x;
  Value head = launch.getBlockIds().y, batchIndex = launch.getBlockIds().z;
  Value kvHead = arith::DivUIOp::create(b, loc, head, kb.index(heads / kvHeads));
  Value scale = kb.f32(*op.getEffectiveScale());
  Value start = arith::MulIOp::create(b, loc, part, chunk);
  Value end = arith::MinSIOp::create(b, loc, arith::AddIOp::create(b, loc, start, chunk),
                                     o.kvLen);
  kb.forLoop(tid, headDim, threads, {}, [&](Value d, ValueRange) {
    Value x = toF32(b, loc, memref::LoadOp::create(b, loc, o.q,
                                                   ValueRange{batchIndex, head, c0, d}));
    memref::StoreOp::create(b, loc, arith::MulFOp::create(b, loc, x, scale), queryTile, d);
    return SmallVector<Value>{};
  });
  kb.forLoop(c0, valueDims, c1, {}, [&](Value d, ValueRange) {
    memref::StoreOp::create(b, loc, zero, accumulator, d);
    return SmallVector<Value>{};
  });
  func::CallOp::create(b, loc, o.barrier);

  // This thread's keys, one at a time.
  auto keys = kb.forLoop(
      arith::AddIOp::create(b, loc, start, tid), end, threads, {negInf, zero},
      [&](Value j, ValueRange carried) {
        auto dot = kb.forLoop(c0, headDim, c1, {zero}, [&](Value d, ValueRange sum) {
          Value x = memref::LoadOp::create(b, loc, queryTile, d);
          Value y = toF32(b, loc, memref::LoadOp::create(b, loc, o.key,
                                                         ValueRange{batchIndex, kvHead, j, d}));
          return SmallVector<Value>{math::FmaOp::create(b, loc, x, y, sum[0])};
        });
        Value s = kb.applyMask(dot.getResult(0), o.mask, o.maskBroadcast,
                               {batchIndex, head, c0, j});
        Value newMax = arith::MaximumFOp::create(b, loc, carried[0], s);
        Value safe = kb.safeMax(newMax);
        Value correction = kb.expMinus(carried[0], safe);
        Value p = kb.expMinus(s, safe);
        kb.forLoop(c0, valueDims, c1, {}, [&](Value d, ValueRange) {
          Value a = memref::LoadOp::create(b, loc, accumulator, d);
          Value v = toF32(b, loc, memref::LoadOp::create(b, loc, o.value,
                                                         ValueRange{batchIndex, kvHead, j, d}));
          memref::StoreOp::create(
              b, loc, math::FmaOp::create(b, loc, p, v, arith::MulFOp::create(b, loc, a, correction)),
              accumulator, d);
          return SmallVector<Value>{};
        });
        return SmallVector<Value>{newMax, math::FmaOp::create(b, loc, carried[1], correction, p)};
      });

  // The warp's lanes merged: butterfly shuffles, every lane ends with the
  // warp's state.
  Value m = keys.getResult(0), l = keys.getResult(1);
  Value width = arith::ConstantIntOp::create(b, loc, kWarp, 32);
  auto shuffle = [&](Value x, int64_t offset) {
    return gpu::ShuffleOp::create(b, loc, x, arith::ConstantIntOp::create(b, loc, offset, 32),
                                  width, gpu::ShuffleMode::XOR)
        .getShuffleResult();
  };
  for (int64_t offset = kWarp / 2; offset >= 1; offset /= 2) {
    Value otherMax = shuffle(m, offset), otherSum = shuffle(l, offset);
    Value safe = kb.safeMax(arith::MaximumFOp::create(b, loc, m, otherMax));
    Value mine = kb.expMinus(m, safe), theirs = kb.expMinus(otherMax, safe);
    kb.forLoop(c0, valueDims, c1, {}, [&](Value d, ValueRange) {
      Value a = memref::LoadOp::create(b, loc, accumulator, d);
      Value merged = math::FmaOp::create(b, loc, shuffle(a, offset), theirs,
                                         arith::MulFOp::create(b, loc, a, mine));
      memref::StoreOp::create(b, loc, merged, accumulator, d);
      return SmallVector<Value>{};
    });
    l = math::FmaOp::create(b, loc, otherSum, theirs, arith::MulFOp::create(b, loc, l, mine));
    m = arith::MaximumFOp::create(b, loc, m, otherMax);
  }
  Value warp = arith::DivUIOp::create(b, loc, tid, kb.index(kWarp));
  Value lane = arith::RemUIOp::create(b, loc, tid, kb.index(kWarp));
  kb.ifThen(arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, lane, c0), [&] {
    memref::StoreOp::create(b, loc, m, warpMax, warp);
    memref::StoreOp::create(b, loc, l, warpSum, warp);
    kb.forLoop(c0, valueDims, c1, {}, [&](Value d, ValueRange) {
      memref::StoreOp::create(b, loc, memref::LoadOp::create(b, loc, accumulator, d), warpAcc,
                              ValueRange{warp, d});
      return SmallVector<Value>{};
    });
  });
  func::CallOp::create(b, loc, o.barrier);

  // The block's warps merged into the part's partials.
  Value warpCount = kb.index(warps);
  auto blockMax = kb.forLoop(c0, warpCount, c1, {negInf}, [&](Value w, ValueRange mx) {
    return SmallVector<Value>{
        arith::MaximumFOp::create(b, loc, mx[0], memref::LoadOp::create(b, loc, warpMax, w))};
  });
  Value safe = kb.safeMax(blockMax.getResult(0));
  auto weight = [&](Value w) {
    return kb.expMinus(memref::LoadOp::create(b, loc, warpMax, w), safe);
  };
  kb.forLoop(tid, valueDims, threads, {}, [&](Value d, ValueRange) {
    auto sum = kb.forLoop(c0, warpCount, c1, {zero}, [&](Value w, ValueRange acc) {
      Value a = memref::LoadOp::create(b, loc, warpAcc, ValueRange{w, d});
      return SmallVector<Value>{math::FmaOp::create(b, loc, weight(w), a, acc[0])};
    });
    memref::StoreOp::create(b, loc, sum.getResult(0), partials,
                            ValueRange{batchIndex, head, part, d});
    return SmallVector<Value>{};
  });
  kb.ifThen(arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tid, c0), [&] {
    auto sum = kb.forLoop(c0, warpCount, c1, {zero}, [&](Value w, ValueRange acc) {
      Value x = memref::LoadOp::create(b, loc, warpSum, w);
      return SmallVector<Value>{math::FmaOp::create(b, loc, weight(w), x, acc[0])};
    });
    memref::StoreOp::create(b, loc, blockMax.getResult(0), partials,
                            ValueRange{batchIndex, head, part, valueDims});
    memref::StoreOp::create(b, loc, sum.getResult(0), partials,
                            ValueRange{batchIndex, head, part, kb.index(valueDim + 1)});
  });
  gpu::TerminatorOp::create(b, loc);

  // The parts merged: one thread per output element.
  b.setInsertionPointAfter(launch);
  int64_t mergeThreads = std::min<int64_t>((valueDim + kWarp - 1) / kWarp * kWarp, 256);
  auto merge = gpu::LaunchOp::create(b, loc, kb.index(heads), o.batch, c1,
                                     kb.index(mergeThreads), c1, c1);
  b.setInsertionPointToEnd(&merge.getBody().front());
  {
    Value t = merge.getThreadIds().x, h = merge.getBlockIds().x, bi = merge.getBlockIds().y;
    Value parts = kb.index(splits);
    auto partMax = kb.forLoop(c0, parts, c1, {negInf}, [&](Value sp, ValueRange mx) {
      Value x = memref::LoadOp::create(b, loc, partials, ValueRange{bi, h, sp, valueDims});
      return SmallVector<Value>{arith::MaximumFOp::create(b, loc, mx[0], x)};
    });
    Value safeAll = kb.safeMax(partMax.getResult(0));
    kb.forLoop(t, valueDims, kb.index(mergeThreads), {}, [&](Value d, ValueRange) {
      auto sums = kb.forLoop(c0, parts, c1, {zero, zero}, [&](Value sp, ValueRange acc) {
        Value w = kb.expMinus(
            memref::LoadOp::create(b, loc, partials, ValueRange{bi, h, sp, valueDims}), safeAll);
        Value a = memref::LoadOp::create(b, loc, partials, ValueRange{bi, h, sp, d});
        Value x = memref::LoadOp::create(b, loc, partials,
                                         ValueRange{bi, h, sp, kb.index(valueDim + 1)});
        return SmallVector<Value>{math::FmaOp::create(b, loc, w, a, acc[0]),
                                  math::FmaOp::create(b, loc, w, x, acc[1])};
      });
      Value result = arith::DivFOp::create(b, loc, sums.getResult(0), sums.getResult(1));
      memref::StoreOp::create(b, loc, fromF32(b, loc, result, resultElement), o.out,
                              ValueRange{bi, h, c0, d});
      return SmallVector<Value>{};
    });
    gpu::TerminatorOp::create(b, loc);
  }
  b.setInsertionPointAfter(guard);
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
      k.kvSplits = std::max<int64_t>(tiling.getKvSplits(), 1);
      bool decode = cast<RankedTensorType>(op.getQuery().getType()).getDimSize(2) == 1;
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
      Operands operands = prepare(b, op);
      if (decode)
        lowerDecode(b, k, operands);
      else
        lowerPrefill(b, k, operands);
      finish(b, op, operands);
    }
  }
};

} // namespace
