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
#include "PagedKVReads.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <functional>
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
  /// Keys and values read through a paged cache's block table in place
  /// (key and value are null then).
  std::optional<hasten::PagedLayer> paged;

  /// Where position `position`'s keys and values are: for a paged cache, its
  /// pool block and slot (looked up once per key, not per element).
  struct Row {
    Value position, block, slot;
  };
  Row locate(OpBuilder &b, Location loc, Value position) const {
    if (!paged)
      return {position, {}, {}};
    auto [block, slot] = hasten::locatePaged(b, loc, *paged, position);
    return {position, block, slot};
  }
  /// The buffer part `part`'s (keys 0, values 1) rows are in: the operand,
  /// or the paged cache's pool.
  Value kvBuffer(int64_t part) const { return paged ? paged->pool : part == 0 ? key : value; }
  /// The indices of element `dim` of `row` of part `part` in kvBuffer(part):
  /// [batch, kvHead, position, dim], or the pool's [block, layer, part,
  /// kvHead, slot, dim].
  SmallVector<Value> kvIndices(OpBuilder &b, Location loc, int64_t part, Value batch,
                               Value kvHead, const Row &row, Value dim) const {
    if (!paged)
      return {batch, kvHead, row.position, dim};
    return {row.block, paged->layer, arith::ConstantIndexOp::create(b, loc, part), kvHead,
            row.slot, dim};
  }
  /// Element [batch, kvHead, row, dim] of the keys (part 0) or values.
  Value loadKeyValue(OpBuilder &b, Location loc, int64_t part, Value batch, Value kvHead,
                     const Row &row, Value dim) const {
    return memref::LoadOp::create(b, loc, kvBuffer(part),
                                  kvIndices(b, loc, part, batch, kvHead, row, dim));
  }
};

/// The keys' and values' paged reads when they are the two parts of one
/// layer of one cache (what --hasten-lower-kv-cache leaves for this pass).
std::optional<std::pair<PagedKVReadOp, PagedKVReadOp>> pagedKeysValues(AttentionOp op) {
  auto keys = op.getKey().getDefiningOp<PagedKVReadOp>();
  auto values = op.getValue().getDefiningOp<PagedKVReadOp>();
  if (!keys || !values || keys.getPart() != 0 || values.getPart() != 1 ||
      keys.getPool() != values.getPool() || keys.getTable() != values.getTable() ||
      keys.getLayer() != values.getLayer() || keys.getLength() != values.getLength())
    return std::nullopt;
  return std::make_pair(keys, values);
}

/// The kernel's operands as buffers; with `readThroughTable`, paged keys and
/// values are read in place through the block table instead of gathered.
Operands prepare(OpBuilder &b, AttentionOp op, bool readThroughTable) {
  Location loc = op.getLoc();
  b.setInsertionPoint(op);
  auto resultType = cast<RankedTensorType>(op.getType());
  Operands o;
  o.barrier = barrierFunction(op->getParentOfType<ModuleOp>());
  o.q = readOnlyBuffer(b, loc, op.getQuery());
  auto paged = readThroughTable ? pagedKeysValues(op) : std::nullopt;
  if (paged) {
    o.paged = hasten::pagedLayer(b, paged->first);
    o.kvLen = paged->first.getLength();
  } else {
    o.key = readOnlyBuffer(b, loc, op.getKey());
    o.value = readOnlyBuffer(b, loc, op.getValue());
    o.kvLen = memref::DimOp::create(b, loc, o.key, 2);
  }
  o.mask = op.getMask() ? readOnlyBuffer(b, loc, op.getMask()) : Value();
  o.batch = memref::DimOp::create(b, loc, o.q, 0);
  o.qLen = memref::DimOp::create(b, loc, o.q, 2);
  SmallVector<Value> dynamicSizes;
  for (int64_t d = 0; d < 4; ++d) {
    if (!resultType.isDynamicDim(d))
      continue;
    // The value dim from the values, or from the pool they are read from.
    Value from = d != 3 ? o.q : o.paged ? o.paged->pool : o.value;
    dynamicSizes.push_back(memref::DimOp::create(b, loc, from, d != 3 ? d : o.paged ? 5 : 3));
  }
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
  KernelBuilder kb{{b, loc}};
  Value c0 = kb.index(0), c1 = kb.index(1);
  Value q = o.q, mask = o.mask, batch = o.batch, qLen = o.qLen, kvLen = o.kvLen, out = o.out;
  func::FuncOp barrier = o.barrier;
  ArrayRef<Value> maskBroadcast = o.maskBroadcast;
  int64_t heads = op.getNumHeads(), kvHeads = op.getNumKvHeads();

  // Causal: key j is visible to query row i when j <= i + (kv_len - q_len).
  Value diagonal = arith::SubIOp::create(b, loc, kvLen, qLen);
  Value threads = kb.index(k.threads);
  Value queryBlocks = arith::CeilDivSIOp::create(b, loc, qLen, threads);
  // No queries or no batch is a launch with no blocks, which launches
  // nothing (no host-side guard: see MapParallelLoopsToGpu).
  auto launch =
      gpu::LaunchOp::create(b, loc, queryBlocks, kb.index(heads), batch, threads, c1, c1);
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
  Value kvHead = arith::DivUIOp::create(b, loc, head, kb.index(heads / kvHeads));
  Value firstRow = arith::MulIOp::create(b, loc, blockIndex, threads);
  Value row = arith::AddIOp::create(b, loc, firstRow, tid);
  Value valid = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, row, qLen);
  Value headDim = kb.index(k.headDim), valueDim = kb.index(k.valueDim), tileKv = kb.index(k.tileKv);
  Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f));
  Value negInf = arith::ConstantOp::create(
      b, loc, b.getF32FloatAttr(-std::numeric_limits<float>::infinity()));
  Value scale = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(*op.getEffectiveScale()));


  // The row's query, scaled once, and a zero accumulator.
  kb.ifThen(valid, [&] {
    kb.forLoop(c0, headDim, c1, {}, [&](Value d, ValueRange) {
      Value x = toF32(b, loc, memref::LoadOp::create(b, loc, q,
                                                     ValueRange{batchIndex, head, row, d}));
      memref::StoreOp::create(b, loc, arith::MulFOp::create(b, loc, x, scale), queryRow, d);
      return SmallVector<Value>{};
    });
    kb.forLoop(c0, valueDim, c1, {}, [&](Value d, ValueRange) {
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

  auto tiles = kb.forLoop(c0, end, tileKv, {negInf, zero}, [&](Value start, ValueRange carried) {
    Value m = carried[0], l = carried[1];
    Value count = arith::MinSIOp::create(b, loc, tileKv, arith::SubIOp::create(b, loc, end, start));
    // Stage the tile: thread t loads elements t, t + threads, ...; rows past
    // the keys read zeros. A paged cache's rows are read through the table.
    auto stage = [&](int64_t part, Value tile, Value width) {
      Value elements = arith::MulIOp::create(b, loc, tileKv, width);
      kb.forLoop(tid, elements, threads, {}, [&](Value e, ValueRange) {
        Value j = arith::DivUIOp::create(b, loc, e, width);
        Value d = arith::RemUIOp::create(b, loc, e, width);
        Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, j, count);
        auto load = scf::IfOp::create(b, loc, TypeRange{f32}, inside, /*withElseRegion=*/true);
        {
          OpBuilder::InsertionGuard g(b);
          b.setInsertionPointToStart(load.thenBlock());
          Operands::Row keyRow = o.locate(b, loc, arith::AddIOp::create(b, loc, start, j));
          Value x = o.loadKeyValue(b, loc, part, batchIndex, kvHead, keyRow, d);
          scf::YieldOp::create(b, loc, toF32(b, loc, x));
          b.setInsertionPointToStart(load.elseBlock());
          scf::YieldOp::create(b, loc, zero);
        }
        memref::StoreOp::create(b, loc, load.getResult(0), tile, ValueRange{j, d});
        return SmallVector<Value>{};
      });
    };
    stage(0, keysTile, headDim);
    stage(1, valuesTile, valueDim);
    func::CallOp::create(b, loc, barrier);

    auto step = scf::IfOp::create(b, loc, TypeRange{f32, f32}, valid, /*withElseRegion=*/true);
    {
      OpBuilder::InsertionGuard g(b);
      b.setInsertionPointToStart(step.elseBlock());
      scf::YieldOp::create(b, loc, ValueRange{m, l});
      b.setInsertionPointToStart(step.thenBlock());
      // Scores of the row against the tile, and their maximum.
      auto scoring = kb.forLoop(c0, count, c1, {m}, [&](Value j, ValueRange running) {
        auto dot = kb.forLoop(c0, headDim, c1, {zero}, [&](Value d, ValueRange sum) {
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
      kb.forLoop(c0, valueDim, c1, {}, [&](Value d, ValueRange) {
        Value a = memref::LoadOp::create(b, loc, accumulator, d);
        memref::StoreOp::create(b, loc, arith::MulFOp::create(b, loc, a, correction),
                                accumulator, d);
        return SmallVector<Value>{};
      });
      auto summing = kb.forLoop(c0, count, c1, {zero}, [&](Value j, ValueRange sum) {
        Value p = kb.expMinus(memref::LoadOp::create(b, loc, scores, j), safeMax);
        kb.forLoop(c0, valueDim, c1, {}, [&](Value d, ValueRange) {
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
  kb.ifThen(valid, [&] {
    kb.forLoop(c0, valueDim, c1, {}, [&](Value d, ValueRange) {
      Value a = memref::LoadOp::create(b, loc, accumulator, d);
      Value o = fromF32(b, loc, divideBySum(b, loc, a, rowSum), resultElement);
      memref::StoreOp::create(b, loc, o, out, ValueRange{batchIndex, head, row, d});
      return SmallVector<Value>{};
    });
  });
  gpu::TerminatorOp::create(b, loc);

  b.setInsertionPointAfter(launch);
}

// ------------------------------------------------- tensor-core prefill

/// The tensor-core kernel's shape: `warps` warps per block, each owning
/// `mTiles` 16-row MMA tiles of queries, `tileKv` keys per step, operands of
/// `element` (bf16 or f16) in shared memory laid out as the plan says.
struct MmaKernel {
  Type element;
  int64_t warps, mTiles, tileKv, headDim, valueDim;
  std::string layout;
  bool volta; // m8n8k4 (lowerPrefillVolta), else m16n8k16 (lowerPrefillMma)
  // Q's fragments reloaded from shared memory at each use rather than held
  // in registers (wide heads, whose accumulators alone fill the registers).
  bool qInShared = false;
};

/// Where element (row, column) of a tile of `dims`-wide rows lives in the
/// shared buffer, in elements: rows `rowElements` apart (padded<P> adds P),
/// and with swizzle<S> the row's 16-byte chunks XORed with the row within
/// spans of S bytes, so that the 8 rows one ldmatrix reads fall in 8
/// different bank groups.
struct SharedLayout {
  int64_t rowElements = 0, swizzleChunks = 0;

  static SharedLayout of(StringRef plan, int64_t dims) {
    SharedLayout l{dims, 0};
    int64_t n = 0;
    if (plan.consume_front("padded<") && !plan.consumeInteger(10, n))
      l.rowElements = dims + n;
    else if (plan.consume_front("swizzle<") && !plan.consumeInteger(10, n) && n >= 32 &&
             (dims / 8) % (n / 16) == 0)
      l.swizzleChunks = n / 16;
    return l;
  }
  /// The offset of 16-byte chunk `chunk` of row `row`.
  Value offset(hasten::KernelBuilder &kb, Value row, Value chunk) const {
    OpBuilder &b = kb.b;
    Location loc = kb.loc;
    if (swizzleChunks)
      chunk = arith::XOrIOp::create(
          b, loc, chunk, arith::RemUIOp::create(b, loc, row, kb.index(swizzleChunks)));
    return arith::AddIOp::create(
        b, loc, arith::MulIOp::create(b, loc, row, kb.index(rowElements)),
        arith::MulIOp::create(b, loc, chunk, kb.index(8)));
  }
};

/// MMA fragments as nvgpu.mma.sync takes them (per lane, m16n8k16): A as
/// vector<4x2xT> (four registers of two halves), B as vector<2x2xT>, C and D
/// as vector<2x2xf32> (rows group and group + 8, columns 2t and 2t + 1).
struct Fragments : KernelBuilder {
  Type element;

  /// Four 8x8 matrices, one per register, whose rows this lane addresses.
  Value load(Value smem, Value offset, bool transpose) {
    return nvgpu::LdMatrixOp::create(b, loc, VectorType::get({4, 2}, element), smem,
                                     ValueRange{offset}, transpose, 4);
  }
  /// Registers [first, first + 2) of an x4 load: one B operand.
  Value half(Value tiles, int64_t first) {
    return vector::ExtractStridedSliceOp::create(b, loc, tiles, ArrayRef<int64_t>{first, 0},
                                                 ArrayRef<int64_t>{2, 2},
                                                 ArrayRef<int64_t>{1, 1});
  }
  /// An A operand from two accumulators' f32 values (the m16n8 C layout of
  /// key columns 0-7 and 8-15 is the m16n8k16 A layout).
  Value operandA(Value low, Value high) {
    SmallVector<Value> values;
    for (Value c : {low, high})
      for (int64_t i = 0; i < 4; ++i)
        values.push_back(vector::ExtractOp::create(b, loc, c, ArrayRef<int64_t>{i / 2, i % 2}));
    Value f32s = vector::FromElementsOp::create(
        b, loc, VectorType::get({4, 2}, b.getF32Type()), values);
    return arith::TruncFOp::create(b, loc, VectorType::get({4, 2}, element), f32s);
  }
  Value mma(Value a, Value bOperand, Value c) {
    return nvgpu::MmaSyncOp::create(b, loc, a, bOperand, c, ArrayRef<int64_t>{16, 8, 16});
  }
  Value element4(Value c, int64_t i) {
    return vector::ExtractOp::create(b, loc, c, ArrayRef<int64_t>{i / 2, i % 2});
  }
  Value accumulator(ArrayRef<Value> values) {
    return vector::FromElementsOp::create(b, loc, VectorType::get({2, 2}, b.getF32Type()),
                                          values);
  }
};

/// A tensor-core kernel's block: its shared buffer (of the operand type),
/// thread id, thread count and batch index.
struct StagingBlock {
  Value smem, tid;
  int64_t threads;
  Value batchIndex;
  bool asyncCopies; // cp.async may stage operands of the buffer's type (sm_80 and newer)
};

/// Where staged rows come from: `buffer`, and the indices of element
/// `column` of row `row` in it (a query or key position; a paged cache's
/// row is looked up in its table).
struct RowSource {
  Value buffer;
  std::function<SmallVector<Value>(Value row, Value column)> indices;
};

/// The rows of head `head` of a [batch, head, row, dim] operand.
RowSource denseRows(Value operand, Value batch, Value head) {
  return {operand, [batch, head](Value row, Value column) {
            return SmallVector<Value>{batch, head, row, column};
          }};
}

/// The keys' (part 0) or values' rows of KV head `kvHead`, through a paged
/// cache's table where there is one.
RowSource kvRows(OpBuilder &b, Location loc, const Operands &o, int64_t part, Value batch,
                 Value kvHead) {
  return {o.kvBuffer(part), [&b, loc, &o, part, batch, kvHead](Value row, Value column) {
            return o.kvIndices(b, loc, part, batch, kvHead, o.locate(b, loc, row), column);
          }};
}

/// Rows [first, first + count) of `source` into the shared buffer at
/// `base` as `layout` says, 8 elements (one 16-byte chunk) per thread and
/// step; rows past `count` are zeros. Operands of another type are
/// converted on the way and stored whole; operands of the buffer's type are
/// copied with cp.async (`nvgpu.device_async_copy`, zero-filled past
/// `count`, one group per copy) when their rows are contiguous at run time,
/// and the caller waits for them (returns true) before the barrier that
/// publishes the tile.
bool stageRows(hasten::KernelBuilder &kb, const StagingBlock &block, const RowSource &source,
               Value first, Value count, int64_t rows, int64_t dims, const SharedLayout &layout,
               int64_t base) {
  OpBuilder &b = kb.b;
  Location loc = kb.loc;
  Type element = cast<MemRefType>(block.smem.getType()).getElementType();
  int64_t chunks = dims / 8;
  auto chunkType = VectorType::get({8}, element);
  // Thread t takes chunks t, t + threads, ...: row and chunk of each.
  auto eachChunk = [&](function_ref<void(Value row, Value chunk)> body) {
    kb.forLoop(block.tid, kb.index(rows * chunks), kb.index(block.threads), {},
               [&](Value e, ValueRange) {
                 body(arith::DivUIOp::create(b, loc, e, kb.index(chunks)),
                      arith::RemUIOp::create(b, loc, e, kb.index(chunks)));
                 return SmallVector<Value>{};
               });
  };
  auto destination = [&](Value row, Value chunk) {
    return arith::AddIOp::create(b, loc, layout.offset(kb, row, chunk), kb.index(base))
        .getResult();
  };
  auto convertAndStore = [&] {
    eachChunk([&](Value row, Value chunk) {
      Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, row, count);
      auto load = scf::IfOp::create(b, loc, TypeRange{chunkType}, inside, true);
      {
        OpBuilder::InsertionGuard g(b);
        b.setInsertionPointToStart(load.thenBlock());
        SmallVector<Value> values;
        Value column = arith::MulIOp::create(b, loc, chunk, kb.index(8));
        Value sourceRow = arith::AddIOp::create(b, loc, first, row);
        SmallVector<Value> at = source.indices(sourceRow, column);
        for (int64_t i = 0; i < 8; ++i) {
          at.back() = arith::AddIOp::create(b, loc, column, kb.index(i));
          Value x = memref::LoadOp::create(b, loc, source.buffer, at);
          values.push_back(x.getType() == element
                               ? x
                               : arith::TruncFOp::create(b, loc, element, toF32(b, loc, x))
                                     .getResult());
        }
        scf::YieldOp::create(
            b, loc, ValueRange{vector::FromElementsOp::create(b, loc, chunkType, values)});
        b.setInsertionPointToStart(load.elseBlock());
        scf::YieldOp::create(
            b, loc,
            ValueRange{arith::ConstantOp::create(
                b, loc, DenseElementsAttr::get(chunkType, b.getZeroAttr(element)))});
      }
      vector::StoreOp::create(b, loc, load.getResult(0), block.smem,
                              ValueRange{destination(row, chunk)}, /*nontemporal=*/false,
                              llvm::MaybeAlign(16));
    });
  };
  auto sourceType = cast<MemRefType>(source.buffer.getType());
  if (!block.asyncCopies || sourceType.getElementType() != element) {
    convertAndStore();
    return false;
  }
  // cp.async needs 16 contiguous bytes: the innermost stride must be 1.
  int64_t rank = sourceType.getRank();
  auto metadata = memref::ExtractStridedMetadataOp::create(b, loc, source.buffer);
  Value contiguous = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                           metadata.getStrides()[rank - 1], kb.index(1));
  auto choice = scf::IfOp::create(b, loc, contiguous, /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(choice.elseBlock());
  convertAndStore();
  b.setInsertionPointToStart(choice.thenBlock());
  int64_t dynamic = ShapedType::kDynamic;
  SmallVector<int64_t> strides(rank, dynamic);
  strides.back() = 1;
  auto unitStride =
      MemRefType::get(sourceType.getShape(), element,
                      StridedLayoutAttr::get(b.getContext(), dynamic, strides),
                      sourceType.getMemorySpace());
  Value rowsOf = memref::CastOp::create(b, loc, unitStride, source.buffer);
  Value lastRow = arith::SubIOp::create(b, loc, count, kb.index(1));
  auto token = nvgpu::DeviceAsyncTokenType::get(b.getContext());
  eachChunk([&](Value row, Value chunk) {
    Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, row, count);
    // Rows past `count` copy nothing (zero-filled) from the last row, an
    // address inside the operand.
    Value sourceRow =
        arith::AddIOp::create(b, loc, first, arith::MinSIOp::create(b, loc, row, lastRow));
    Value copied = arith::SelectOp::create(b, loc, inside, kb.index(8), kb.index(0));
    Value copy = nvgpu::DeviceAsyncCopyOp::create(
        b, loc, token, block.smem, ValueRange{destination(row, chunk)}, rowsOf,
        source.indices(sourceRow, arith::MulIOp::create(b, loc, chunk, kb.index(8))),
        b.getIndexAttr(8), copied, b.getUnitAttr());
    nvgpu::DeviceAsyncCreateGroupOp::create(b, loc, token, ValueRange{copy});
  });
  return true;
}

/// Waits for every cp.async group this thread committed (an empty group
/// committed first gives the wait its token).
void waitForCopies(hasten::KernelBuilder &kb) {
  auto token = nvgpu::DeviceAsyncTokenType::get(kb.b.getContext());
  Value group = nvgpu::DeviceAsyncCreateGroupOp::create(kb.b, kb.loc, token, ValueRange{});
  nvgpu::DeviceAsyncWaitOp::create(kb.b, kb.loc, group, kb.b.getI32IntegerAttr(0));
}

/// What both tensor-core kernels open with: a launch of one block per
/// `blockQ` query rows, head and batch (none when there are no queries or
/// no batch) with its shared buffer, the block's ids, the last key the block
/// sees (causal: its last row's diagonal) and the constants the key loop
/// needs. The insertion point is left inside the launch.
struct TensorCoreLaunch {
  gpu::LaunchOp launch;
  Value smem, tid, head, batchIndex, kvHead, firstRow, end, diagonal;
  Value c0, c1, negInf, zero, scale, lastQuery, lastKey;
  int64_t threads;
  bool asyncCopies = false, pendingCopies = false;

  /// stageRows into this block's shared buffer.
  void stage(hasten::KernelBuilder &kb, const RowSource &source, Value first, Value count,
             int64_t rows, int64_t dims, const SharedLayout &layout, int64_t base) {
    pendingCopies |= stageRows(kb, {smem, tid, threads, batchIndex, asyncCopies}, source, first,
                               count, rows, dims, layout, base);
  }
  /// The barrier that publishes staged tiles to the block, after this
  /// thread's copies have landed.
  void publish(hasten::KernelBuilder &kb, func::FuncOp barrier) {
    if (pendingCopies)
      waitForCopies(kb);
    pendingCopies = false;
    func::CallOp::create(kb.b, kb.loc, barrier);
  }
};

TensorCoreLaunch openTensorCoreLaunch(hasten::KernelBuilder &kb, AttentionOp op,
                                      const Operands &o, int64_t blockQ, int64_t threads,
                                      int64_t sharedElements, Type element) {
  OpBuilder &b = kb.b;
  Location loc = kb.loc;
  TensorCoreLaunch l;
  l.threads = threads;
  l.c0 = kb.index(0);
  l.c1 = kb.index(1);
  l.negInf = kb.f32(-std::numeric_limits<float>::infinity());
  l.zero = kb.f32(0.0f);
  l.diagonal = arith::SubIOp::create(b, loc, o.kvLen, o.qLen);
  Value queryBlocks = arith::CeilDivSIOp::create(b, loc, o.qLen, kb.index(blockQ));
  auto launch = l.launch = gpu::LaunchOp::create(
      b, loc, queryBlocks, kb.index(op.getNumHeads()), o.batch, kb.index(threads), l.c1, l.c1);
  b.setInsertionPointToEnd(&launch.getBody().front());
  l.smem = memref::AllocaOp::create(
      b, loc,
      MemRefType::get({sharedElements}, element, MemRefLayoutAttrInterface{},
                      gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup)));
  l.tid = launch.getThreadIds().x;
  l.head = launch.getBlockIds().y;
  l.batchIndex = launch.getBlockIds().z;
  l.kvHead = arith::DivUIOp::create(b, loc, l.head,
                                    kb.index(op.getNumHeads() / op.getNumKvHeads()));
  l.firstRow = arith::MulIOp::create(b, loc, launch.getBlockIds().x, kb.index(blockQ));
  l.end = o.kvLen;
  if (op.getCausal()) {
    Value lastRow = arith::SubIOp::create(
        b, loc,
        arith::MinSIOp::create(b, loc,
                               arith::AddIOp::create(b, loc, l.firstRow, kb.index(blockQ)),
                               o.qLen),
        l.c1);
    Value seen = arith::AddIOp::create(
        b, loc, arith::AddIOp::create(b, loc, lastRow, l.diagonal), l.c1);
    l.end = arith::MaxSIOp::create(b, loc, arith::MinSIOp::create(b, loc, seen, o.kvLen), l.c0);
  }
  l.scale = kb.f32(*op.getEffectiveScale());
  l.lastQuery = arith::SubIOp::create(b, loc, o.qLen, l.c1);
  l.lastKey = arith::SubIOp::create(b, loc, o.kvLen, l.c1);
  return l;
}

/// `x` from the lane `offset` away (xor) in the warp.
Value xorShuffle(OpBuilder &b, Location loc, Value x, int64_t offset) {
  return gpu::ShuffleOp::create(b, loc, x, arith::ConstantIntOp::create(b, loc, offset, 32),
                                arith::ConstantIntOp::create(b, loc, 32, 32),
                                gpu::ShuffleMode::XOR)
      .getShuffleResult();
}

/// Raw scores of queries `rows[i]` against columns `columns[i]` of the
/// key tile at `start` (`tileKv` keys, `count` of them real): scaled in
/// f32, the mask added (or -inf where a boolean mask is false; rows and
/// keys past the ends read the last ones, never outside), and -inf past
/// the tile's `count` keys or, with causal, a row's diagonal. That last
/// step is FastAttention's tiling-mask: generated from indices, and only
/// where the tile needs it. A full tile at or below the diagonal of the
/// block's first row (every key visible to every row) skips the
/// comparisons in one branch the whole block takes alike; tiles past the
/// last row's diagonal are never loaded (the key loop ends before them).
SmallVector<Value> maskedScores(KernelBuilder &kb, AttentionOp op, const Operands &o,
                                const TensorCoreLaunch &l, ArrayRef<Value> raw,
                                ArrayRef<Value> rows, ArrayRef<Value> columns, Value start,
                                Value count, int64_t tileKv) {
  OpBuilder &b = kb.b;
  Location loc = kb.loc;
  SmallVector<Value> scores;
  for (auto [x, row, column] : llvm::zip_equal(raw, rows, columns)) {
    Value key = arith::AddIOp::create(b, loc, start, column);
    Value s = arith::MulFOp::create(b, loc, x, l.scale);
    scores.push_back(kb.applyMask(
        s, o.mask, o.maskBroadcast,
        {l.batchIndex, l.head, arith::MinSIOp::create(b, loc, row, l.lastQuery),
         arith::MinSIOp::create(b, loc, key, l.lastKey)}));
  }
  Value edge = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, count, kb.index(tileKv));
  if (op.getCausal()) {
    Value lastKey = arith::AddIOp::create(b, loc, start, kb.index(tileKv - 1));
    Value firstDiagonal = arith::AddIOp::create(b, loc, l.firstRow, l.diagonal);
    edge = arith::OrIOp::create(
        b, loc, edge,
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, lastKey, firstDiagonal));
  }
  SmallVector<Type> types(scores.size(), b.getF32Type());
  auto masking = scf::IfOp::create(b, loc, types, edge, /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(masking.elseBlock());
  scf::YieldOp::create(b, loc, scores);
  b.setInsertionPointToStart(masking.thenBlock());
  SmallVector<Value> masked;
  for (auto [s, row, column] : llvm::zip_equal(scores, rows, columns)) {
    Value outside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, column, count);
    if (op.getCausal())
      outside = arith::OrIOp::create(
          b, loc, outside,
          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt,
                                arith::AddIOp::create(b, loc, start, column),
                                arith::AddIOp::create(b, loc, row, l.diagonal)));
    masked.push_back(arith::SelectOp::create(b, loc, outside, l.negInf, s));
  }
  scf::YieldOp::create(b, loc, masked);
  return SmallVector<Value>(masking.getResults());
}

/// Prefill on tensor cores (FlashAttention-2's structure on sm_80 and
/// newer): each warp owns m.mTiles 16-row tiles of the block's queries and
/// keeps their Q fragments, running max and sum, and output accumulators in
/// registers; per key tile the block stages K and V in shared memory
/// (converted to bf16/f16, laid out as planned), each warp computes its
/// scores with mma.sync m16n8k16 from ldmatrix fragments, rescales by the
/// online softmax, reuses the probabilities' accumulator registers as the A
/// operand of P V (the m16n8 C layout is the m16n8k16 A layout), and reads
/// V's fragments with ldmatrix.trans. The scores never leave registers; a
/// row's max and sum are reduced over the 4 lanes that share it with
/// shuffles. The Q tile is staged in the same shared buffer before K and V
/// reuse it.
void lowerPrefillMma(OpBuilder &b, const Kernel &k, const MmaKernel &m, const Operands &o) {
  AttentionOp op = k.op;
  Location loc = op.getLoc();
  Fragments kb{{{b, loc}}, m.element};
  Type resultElement = cast<RankedTensorType>(op.getType()).getElementType();
  int64_t threads = m.warps * 32, rowsPerWarp = m.mTiles * 16, blockQ = m.warps * rowsPerWarp;
  int64_t kSteps = m.headDim / 16, keyTiles = m.tileKv / 8, outTiles = m.valueDim / 8;
  SharedLayout qLayout = SharedLayout::of(m.layout, m.headDim);
  SharedLayout kLayout = qLayout;
  SharedLayout vLayout = SharedLayout::of(m.layout, m.valueDim);
  // Q's tile first; K and V after it when Q stays in shared memory, else
  // over it once its fragments are in registers.
  int64_t kBase = m.qInShared ? blockQ * qLayout.rowElements : 0;
  int64_t vBase = kBase + m.tileKv * kLayout.rowElements;
  int64_t sharedElements =
      std::max(blockQ * qLayout.rowElements, vBase + m.tileKv * vLayout.rowElements);

  TensorCoreLaunch l = openTensorCoreLaunch(kb, op, o, blockQ, threads, sharedElements, m.element);
  l.asyncCopies = true;
  Value c0 = l.c0, negInf = l.negInf, zero = l.zero, end = l.end;
  Value smem = l.smem, tid = l.tid, head = l.head, batchIndex = l.batchIndex, kvHead = l.kvHead;
  Value firstRow = l.firstRow;
  Value warp = kb.div(tid, 32), lane = kb.rem(tid, 32);
  Value group = kb.div(lane, 4), inGroup = kb.rem(lane, 4);
  Value warpRow = kb.mul(warp, rowsPerWarp);
  // The rows and chunks this lane addresses in an ldmatrix.x4: matrix
  // lane / 8, row lane % 8 of it. Q (A operand) and V (B, transposed)
  // take matrices (rows 0-7 | 8-15) x (chunk 0 | 1) column-major; K (B)
  // row-major.
  Value laneRowA = kb.add(kb.rem(lane, 8), kb.mul(kb.rem(kb.div(lane, 8), 2), 8));
  Value laneChunkA = kb.div(lane, 16);
  Value laneRowB = kb.add(kb.rem(lane, 8), kb.mul(kb.div(lane, 16), 8));
  Value laneChunkB = kb.rem(kb.div(lane, 8), 2);
  Value pairColumn = kb.mul(inGroup, 2);

  // The block's queries, and each warp's Q fragments: [tile][k step][4].
  l.stage(kb, denseRows(o.q, batchIndex, head), firstRow,
          arith::SubIOp::create(b, loc, o.qLen, firstRow), blockQ, m.headDim, qLayout, 0);
  l.publish(kb, o.barrier);
  auto qFragment = [&](int64_t t, int64_t kk) {
    return kb.load(
        smem,
        qLayout.offset(kb, kb.add(kb.addc(warpRow, t * 16), laneRowA), kb.addc(laneChunkA, 2 * kk)),
        /*transpose=*/false);
  };
  SmallVector<SmallVector<Value>> qFragments(m.mTiles);
  if (!m.qInShared) {
    for (int64_t t = 0; t < m.mTiles; ++t)
      for (int64_t kk = 0; kk < kSteps; ++kk)
        qFragments[t].push_back(qFragment(t, kk));
    // K and V reuse the buffer.
    func::CallOp::create(b, loc, o.barrier);
  }


  // Carried per tile: each 16-row tile's max and sum for rows group and
  // group + 8, then its output accumulators, one per 8 value columns.
  int64_t perTile = 4 + outTiles;
  Value zeros = kb.accumulator({zero, zero, zero, zero});
  SmallVector<Value> init;
  for (int64_t t = 0; t < m.mTiles; ++t) {
    init.append({negInf, negInf, zero, zero});
    init.append(outTiles, zeros);
  }
  auto shuffle = [&](Value x, int64_t offset) { return xorShuffle(b, loc, x, offset); };
  auto tiles = kb.forLoop(c0, end, kb.index(m.tileKv), init, [&](Value start, ValueRange carried) {
    Value count = arith::MinSIOp::create(b, loc, kb.index(m.tileKv),
                                         arith::SubIOp::create(b, loc, end, start));
    l.stage(kb, kvRows(b, loc, o, 0, batchIndex, kvHead), start, count, m.tileKv, m.headDim,
            kLayout, kBase);
    l.stage(kb, kvRows(b, loc, o, 1, batchIndex, kvHead), start, count, m.tileKv, m.valueDim,
            vLayout, vBase);
    l.publish(kb, o.barrier);

    // Scores: [tile][8 keys], Q K^T with K's fragments shared by the
    // warp's tiles.
    SmallVector<SmallVector<Value>> scores(m.mTiles, SmallVector<Value>(keyTiles, zeros));
    for (int64_t np = 0; np < keyTiles / 2; ++np)
      for (int64_t kk = 0; kk < kSteps; ++kk) {
        Value kTiles = kb.load(
            smem,
            kb.addc(kLayout.offset(kb, kb.addc(laneRowB, np * 16), kb.addc(laneChunkB, 2 * kk)),
                    kBase),
            /*transpose=*/false);
        Value low = kb.half(kTiles, 0), high = kb.half(kTiles, 2);
        for (int64_t t = 0; t < m.mTiles; ++t) {
          Value q = m.qInShared ? qFragment(t, kk) : qFragments[t][kk];
          scores[t][2 * np] = kb.mma(q, low, scores[t][2 * np]);
          scores[t][2 * np + 1] = kb.mma(q, high, scores[t][2 * np + 1]);
        }
      }

    // The scores' elements: [tile][8 keys][4], probabilities after.
    SmallVector<Value> next;
    SmallVector<SmallVector<SmallVector<Value, 4>>> probabilities(
        m.mTiles, SmallVector<SmallVector<Value, 4>>(keyTiles));
    for (int64_t t = 0; t < m.mTiles; ++t)
      for (int64_t nt = 0; nt < keyTiles; ++nt)
        for (int64_t i = 0; i < 4; ++i)
          probabilities[t][nt].push_back(kb.element4(scores[t][nt], i));
    // Element 2 half + i of an m16n8 tile is row group + 8 half, column
    // 2 (lane % 4) + i.
    auto rowOf = [&](int64_t t, int64_t half) {
      return kb.add(firstRow, kb.addc(kb.add(warpRow, group), t * 16 + half * 8));
    };
    {
      SmallVector<Value> raw, rows, columns;
      for (int64_t t = 0; t < m.mTiles; ++t)
        for (int64_t half = 0; half < 2; ++half)
          for (int64_t nt = 0; nt < keyTiles; ++nt)
            for (int64_t i = 0; i < 2; ++i) {
              raw.push_back(probabilities[t][nt][2 * half + i]);
              rows.push_back(rowOf(t, half));
              columns.push_back(kb.addc(pairColumn, nt * 8 + i));
            }
      SmallVector<Value> masked =
          maskedScores(kb, op, o, l, raw, rows, columns, start, count, m.tileKv);
      auto next = masked.begin();
      for (int64_t t = 0; t < m.mTiles; ++t)
        for (int64_t half = 0; half < 2; ++half)
          for (int64_t nt = 0; nt < keyTiles; ++nt)
            for (int64_t i = 0; i < 2; ++i)
              probabilities[t][nt][2 * half + i] = *next++;
    }
    for (int64_t t = 0; t < m.mTiles; ++t) {
      ValueRange state = carried.slice(t * perTile, perTile);
      SmallVector<Value> tileState(state.begin(), state.end());
      Value corrections[2];
      for (int64_t half = 0; half < 2; ++half) {
        Value tileMax = negInf;
        for (int64_t nt = 0; nt < keyTiles; ++nt)
          for (int64_t i = 0; i < 2; ++i)
            tileMax = arith::MaximumFOp::create(b, loc, tileMax,
                                                probabilities[t][nt][2 * half + i]);
        // The row's four lanes agree on its max.
        tileMax = arith::MaximumFOp::create(b, loc, tileMax, shuffle(tileMax, 1));
        tileMax = arith::MaximumFOp::create(b, loc, tileMax, shuffle(tileMax, 2));
        Value oldMax = tileState[half];
        Value newMax = arith::MaximumFOp::create(b, loc, oldMax, tileMax);
        Value safe = kb.safeMax(newMax);
        Value correction = kb.expMinus(oldMax, safe);
        Value sum = zero;
        for (int64_t nt = 0; nt < keyTiles; ++nt)
          for (int64_t i = 0; i < 2; ++i) {
            Value p = kb.expMinus(probabilities[t][nt][2 * half + i], safe);
            probabilities[t][nt][2 * half + i] = p;
            sum = arith::AddFOp::create(b, loc, sum, p);
          }
        tileState[half] = newMax;
        // This lane's share of the row's sum; the lanes add up at the end.
        tileState[2 + half] = math::FmaOp::create(b, loc, tileState[2 + half], correction, sum);
        corrections[half] = correction;
      }
      // Both rows' accumulators rescaled.
      for (int64_t nt = 0; nt < outTiles; ++nt) {
        Value &acc = tileState[4 + nt];
        SmallVector<Value> scaled;
        for (int64_t i = 0; i < 4; ++i)
          scaled.push_back(
              arith::MulFOp::create(b, loc, kb.element4(acc, i), corrections[i / 2]));
        acc = kb.accumulator(scaled);
      }
      next.append(tileState);
    }

    // P V: the probabilities' registers are the A fragments.
    for (int64_t kk = 0; kk < m.tileKv / 16; ++kk) {
      SmallVector<Value> pFragments;
      for (int64_t t = 0; t < m.mTiles; ++t)
        pFragments.push_back(kb.operandA(kb.accumulator(probabilities[t][2 * kk]),
                                         kb.accumulator(probabilities[t][2 * kk + 1])));
      for (int64_t np = 0; np < outTiles / 2; ++np) {
        Value vTiles = kb.load(
            smem,
            kb.addc(vLayout.offset(kb, kb.addc(laneRowA, kk * 16), kb.addc(laneChunkA, 2 * np)),
                    vBase),
            /*transpose=*/true);
        for (int64_t t = 0; t < m.mTiles; ++t)
          for (int64_t half = 0; half < 2; ++half) {
            Value &acc = next[t * perTile + 4 + 2 * np + half];
            acc = kb.mma(pFragments[t], kb.half(vTiles, 2 * half), acc);
          }
      }
    }
    // Every warp is done with the tile before the next one overwrites it.
    func::CallOp::create(b, loc, o.barrier);
    return next;
  });

  // Rows' sums over their four lanes, and the outputs.
  for (int64_t t = 0; t < m.mTiles; ++t)
    for (int64_t half = 0; half < 2; ++half) {
      Value sum = tiles.getResult(t * perTile + 2 + half);
      sum = arith::AddFOp::create(b, loc, sum, shuffle(sum, 1));
      sum = arith::AddFOp::create(b, loc, sum, shuffle(sum, 2));
      Value row = kb.add(firstRow, kb.addc(kb.add(warpRow, group), t * 16 + half * 8));
      kb.ifThen(arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, row, o.qLen), [&] {
        for (int64_t nt = 0; nt < outTiles; ++nt)
          for (int64_t i = 0; i < 2; ++i) {
            Value acc =
                kb.element4(tiles.getResult(t * perTile + 4 + nt), 2 * half + i);
            Value out = fromF32(b, loc, divideBySum(b, loc, acc, sum), resultElement);
            memref::StoreOp::create(
                b, loc, out, o.out,
                ValueRange{batchIndex, head, row, kb.addc(pairColumn, nt * 8 + i)});
          }
      });
    }
  gpu::TerminatorOp::create(b, loc);
  b.setInsertionPointAfter(l.launch);
}

/// Prefill on Volta's tensor cores (mma.sync m8n8k4, f16 operands, f32
/// accumulators). One m8n8k4 instruction is four independent 8x8x4
/// products, one per quad pair of lanes; here they tile a 16 x 16 block of
/// the warp's output: quad pair q computes rows 8 (q % 2) + [0, 8) and
/// columns 8 (q / 2) + [0, 8). Each warp owns 16 query rows. Per key tile:
/// S = Q K^T with Q row-major (each lane holds 4 consecutive head dims of
/// one row, loaded once) and K column-major (4 consecutive dims of one
/// key); the online softmax on S's accumulators (a row's max and sum over
/// the 2 x 2 lanes that hold it: shuffles xor 2 and 8); P to shared memory
/// in f16, since the accumulator layout is not an operand layout on Volta;
/// then O += P V with P and V row-major. Operand rows are padded as the
/// plan says (padded<8> puts the 8 rows a quad pair reads in different
/// banks).
void lowerPrefillVolta(OpBuilder &b, const Kernel &k, const MmaKernel &m, const Operands &o) {
  AttentionOp op = k.op;
  MLIRContext *ctx = b.getContext();
  Location loc = op.getLoc();
  KernelBuilder kb{{b, loc}};
  Type f32 = b.getF32Type(), f16 = m.element;
  Type resultElement = cast<RankedTensorType>(op.getType()).getElementType();
  int64_t threads = m.warps * 32, blockQ = m.warps * 16;
  int64_t keyBlocks = m.tileKv / 16, outBlocks = m.valueDim / 16;
  SharedLayout qLayout = SharedLayout::of(m.layout, m.headDim), kLayout = qLayout;
  SharedLayout vLayout = SharedLayout::of(m.layout, m.valueDim);
  SharedLayout pLayout = SharedLayout::of("padded<8>", m.tileKv);
  int64_t vBase = m.tileKv * kLayout.rowElements;
  int64_t pBase = std::max(blockQ * qLayout.rowElements, vBase + m.tileKv * vLayout.rowElements);
  int64_t sharedElements = pBase + blockQ * pLayout.rowElements;

  TensorCoreLaunch l = openTensorCoreLaunch(kb, op, o, blockQ, threads, sharedElements, f16);
  Value c0 = l.c0, negInf = l.negInf, zero = l.zero, end = l.end;
  Value smem = l.smem, tid = l.tid, head = l.head, batchIndex = l.batchIndex, kvHead = l.kvHead;
  Value firstRow = l.firstRow;
  Value warp = kb.div(tid, 32), lane = kb.rem(tid, 32);
  Value warpRow = kb.mul(warp, 16);
  // Lane l: quad pair q = (l / 4) % 4, high group h = l / 16, r = l % 4.
  Value quadPair = kb.rem(kb.div(lane, 4), 4), high = kb.div(lane, 16), r = kb.rem(lane, 4);
  Value highRows = kb.mul(high, 4);
  // The operand row (A) or column (B) this lane holds, within the warp's
  // 16 x 16 block; the first column of its quad pair's 8.
  Value quadColumn = kb.mul(kb.div(quadPair, 2), 8);
  Value operandRow = kb.add(kb.add(kb.mul(kb.rem(quadPair, 2), 8), r), highRows);
  Value operandColumn = kb.add(kb.add(quadColumn, r), highRows);
  // Accumulator element i: row (l & 1) + (i & 2) + 4h + 8 (q % 2), column
  // 8 (q / 2) + (i & 4) + (l & 2) + (i & 1).
  Value accRow = kb.add(kb.add(kb.rem(lane, 2), highRows), kb.mul(kb.rem(quadPair, 2), 8));
  Value accColumn = kb.add(quadColumn, kb.mul(kb.rem(kb.div(lane, 2), 2), 2));
  auto accRowOf = [&](int64_t i) { return kb.addc(accRow, i & 2); };
  auto accColumnOf = [&](int64_t i) { return kb.addc(accColumn, (i & 4) + (i & 1)); };

  // Four consecutive elements of a row in shared memory.
  auto load4 = [&](const SharedLayout &layout, int64_t base, Value row, Value column) {
    Value at = kb.addc(kb.add(kb.mul(row, layout.rowElements), column), base);
    return vector::LoadOp::create(b, loc, VectorType::get({4}, f16), smem, ValueRange{at},
                                  /*nontemporal=*/false, llvm::MaybeAlign(8))
        .getResult();
  };
  auto halves = [&](Value four) {
    SmallVector<Value> regs;
    for (int64_t i = 0; i < 2; ++i)
      regs.push_back(vector::ExtractStridedSliceOp::create(b, loc, four, ArrayRef<int64_t>{2 * i},
                                                           ArrayRef<int64_t>{2},
                                                           ArrayRef<int64_t>{1}));
    return regs;
  };
  auto mma = [&](Value a, Value bOperand, ArrayRef<Value> c, bool bColumnMajor) {
    auto result = LLVM::LLVMStructType::getLiteral(ctx, SmallVector<Type>(8, f32));
    Value d = NVVM::MmaOp::create(
        b, loc, result, halves(a), halves(bOperand), c, ArrayRef<int64_t>{8, 8, 4},
        std::nullopt, std::nullopt,
        std::array<NVVM::MMATypes, 2>{NVVM::MMATypes::f16, NVVM::MMATypes::f16},
        std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row,
                                       bColumnMajor ? NVVM::MMALayout::col
                                                    : NVVM::MMALayout::row});
    SmallVector<Value> out;
    for (int64_t i = 0; i < 8; ++i)
      out.push_back(LLVM::ExtractValueOp::create(b, loc, d, i));
    return out;
  };

  l.stage(kb, denseRows(o.q, batchIndex, head), firstRow,
          arith::SubIOp::create(b, loc, o.qLen, firstRow), blockQ, m.headDim, qLayout, 0);
  l.publish(kb, o.barrier);
  SmallVector<Value> qFragments;
  for (int64_t kk = 0; kk < m.headDim / 4; ++kk)
    qFragments.push_back(load4(qLayout, 0, kb.add(warpRow, operandRow), kb.index(4 * kk)));
  func::CallOp::create(b, loc, o.barrier);

  // Carried: the max and sum of the lane's two rows, then the output
  // accumulators (8 per 16 value columns).
  SmallVector<Value> init{negInf, negInf, zero, zero};
  init.append(outBlocks * 8, zero);
  auto shuffle = [&](Value x, int64_t offset) { return xorShuffle(b, loc, x, offset); };
  auto tiles = kb.forLoop(c0, end, kb.index(m.tileKv), init, [&](Value start, ValueRange carried) {
    Value count = arith::MinSIOp::create(b, loc, kb.index(m.tileKv),
                                         arith::SubIOp::create(b, loc, end, start));
    l.stage(kb, kvRows(b, loc, o, 0, batchIndex, kvHead), start, count, m.tileKv, m.headDim,
            kLayout, 0);
    l.stage(kb, kvRows(b, loc, o, 1, batchIndex, kvHead), start, count, m.tileKv, m.valueDim,
            vLayout, vBase);
    l.publish(kb, o.barrier);

    // S, 16 keys at a time: [key block][8].
    SmallVector<SmallVector<Value>> scores;
    for (int64_t kb16 = 0; kb16 < keyBlocks; ++kb16) {
      SmallVector<Value> acc(8, zero);
      for (int64_t kk = 0; kk < m.headDim / 4; ++kk)
        acc = mma(qFragments[kk],
                  load4(kLayout, 0, kb.addc(operandColumn, 16 * kb16), kb.index(4 * kk)), acc,
                  /*bColumnMajor=*/true);
      scores.push_back(acc);
    }
    {
      SmallVector<Value> raw, rows, columns;
      for (int64_t kb16 = 0; kb16 < keyBlocks; ++kb16)
        for (int64_t at = 0; at < 8; ++at) {
          raw.push_back(scores[kb16][at]);
          rows.push_back(kb.add(firstRow, kb.add(warpRow, accRowOf(at))));
          columns.push_back(kb.addc(accColumnOf(at), 16 * kb16));
        }
      SmallVector<Value> masked =
          maskedScores(kb, op, o, l, raw, rows, columns, start, count, m.tileKv);
      for (int64_t kb16 = 0; kb16 < keyBlocks; ++kb16)
        for (int64_t at = 0; at < 8; ++at)
          scores[kb16][at] = masked[kb16 * 8 + at];
    }
    SmallVector<Value> next(carried.begin(), carried.end());
    Value corrections[2];
    for (int64_t half = 0; half < 2; ++half) {
      Value tileMax = negInf;
      for (int64_t kb16 = 0; kb16 < keyBlocks; ++kb16)
        for (int64_t i : {0, 1, 4, 5})
          tileMax = arith::MaximumFOp::create(b, loc, tileMax, scores[kb16][i + 2 * half]);
      // The row's other lanes: the other column pair of the quad, and the
      // quad pair of the other 8 columns.
      tileMax = arith::MaximumFOp::create(b, loc, tileMax, shuffle(tileMax, 2));
      tileMax = arith::MaximumFOp::create(b, loc, tileMax, shuffle(tileMax, 8));
      Value newMax = arith::MaximumFOp::create(b, loc, next[half], tileMax);
      Value safe = kb.safeMax(newMax);
      corrections[half] = kb.expMinus(next[half], safe);
      Value sum = zero;
      for (int64_t kb16 = 0; kb16 < keyBlocks; ++kb16)
        for (int64_t i : {0, 1, 4, 5}) {
          Value p = kb.expMinus(scores[kb16][i + 2 * half], safe);
          scores[kb16][i + 2 * half] = p;
          sum = arith::AddFOp::create(b, loc, sum, p);
        }
      next[half] = newMax;
      next[2 + half] = math::FmaOp::create(b, loc, next[2 + half], corrections[half], sum);
    }
    for (int64_t e = 0; e < outBlocks * 8; ++e)
      next[4 + e] = arith::MulFOp::create(b, loc, next[4 + e], corrections[(e % 8 & 2) / 2]);
    // P to shared memory (two adjacent columns per store).
    for (int64_t kb16 = 0; kb16 < keyBlocks; ++kb16)
      for (int64_t i : {0, 2, 4, 6}) {
        Value pair = vector::FromElementsOp::create(
            b, loc, VectorType::get({2}, f16),
            ValueRange{arith::TruncFOp::create(b, loc, f16, scores[kb16][i]),
                       arith::TruncFOp::create(b, loc, f16, scores[kb16][i + 1])});
        Value at = kb.addc(kb.add(kb.mul(kb.add(warpRow, accRowOf(i)), pLayout.rowElements),
                            kb.addc(accColumnOf(i), 16 * kb16)),
                        pBase);
        vector::StoreOp::create(b, loc, pair, smem, ValueRange{at}, /*nontemporal=*/false,
                                llvm::MaybeAlign(4));
      }
    func::CallOp::create(b, loc, o.barrier);
    // O += P V, 4 keys at a time.
    for (int64_t kk = 0; kk < m.tileKv / 4; ++kk) {
      Value pFragment = load4(pLayout, pBase, kb.add(warpRow, operandRow), kb.index(4 * kk));
      for (int64_t vb = 0; vb < outBlocks; ++vb) {
        Value vFragment = load4(vLayout, vBase, kb.addc(r, 4 * kk),
                                kb.addc(kb.add(quadColumn, highRows), 16 * vb));
        SmallVector<Value> acc(next.begin() + 4 + 8 * vb, next.begin() + 12 + 8 * vb);
        SmallVector<Value> d = mma(pFragment, vFragment, acc, /*bColumnMajor=*/false);
        std::copy(d.begin(), d.end(), next.begin() + 4 + 8 * vb);
      }
    }
    func::CallOp::create(b, loc, o.barrier);
    return next;
  });

  for (int64_t half = 0; half < 2; ++half) {
    Value sum = tiles.getResult(2 + half);
    sum = arith::AddFOp::create(b, loc, sum, shuffle(sum, 2));
    sum = arith::AddFOp::create(b, loc, sum, shuffle(sum, 8));
    Value row = kb.add(firstRow, kb.add(warpRow, accRowOf(2 * half)));
    kb.ifThen(arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, row, o.qLen), [&] {
      for (int64_t vb = 0; vb < outBlocks; ++vb)
        for (int64_t i : {0, 1, 4, 5}) {
          Value acc = tiles.getResult(4 + 8 * vb + i + 2 * half);
          Value out = fromF32(b, loc, divideBySum(b, loc, acc, sum), resultElement);
          memref::StoreOp::create(
              b, loc, out, o.out,
              ValueRange{batchIndex, head, row, kb.addc(accColumnOf(i + 2 * half), 16 * vb)});
        }
    });
  }
  gpu::TerminatorOp::create(b, loc);
  b.setInsertionPointAfter(l.launch);
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
  // An empty batch: both launches have no blocks and launch nothing.
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
        Operands::Row row = o.locate(b, loc, j);
        auto dot = kb.forLoop(c0, headDim, c1, {zero}, [&](Value d, ValueRange sum) {
          Value x = memref::LoadOp::create(b, loc, queryTile, d);
          Value y = toF32(b, loc, o.loadKeyValue(b, loc, 0, batchIndex, kvHead, row, d));
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
          Value v = toF32(b, loc, o.loadKeyValue(b, loc, 1, batchIndex, kvHead, row, d));
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
      Value result = divideBySum(b, loc, sums.getResult(0), sums.getResult(1));
      memref::StoreOp::create(b, loc, fromF32(b, loc, result, resultElement), o.out,
                              ValueRange{bi, h, c0, d});
      return SmallVector<Value>{};
    });
    gpu::TerminatorOp::create(b, loc);
  }
  b.setInsertionPointAfter(merge);
}

struct GpuAttentionPass : public hasten::impl::GpuAttentionBase<GpuAttentionPass> {
  using GpuAttentionBase::GpuAttentionBase;

  /// The tensor-core kernel's shape for `op` (prefill, precision bf16 or
  /// f16), from its plan and the static shared memory; warps = 0 when the
  /// SIMT kernel takes the op instead (with a remark saying why), nullopt
  /// after an error.
  std::optional<MmaKernel> planMma(AttentionOp op, const Kernel &k, AttentionTilingAttr tiling,
                                   const AttentionTarget &target) {
    bool volta = target.name == "sm_70";
    if (volta && precision == "bf16") {
      op->emitError("hasten-gpu-attention: precision=bf16 needs sm_80 or newer (Volta's "
                    "tensor cores multiply f16: use precision=f16)");
      signalPassFailure();
      return std::nullopt;
    }
    MmaKernel m;
    m.element = precision == "bf16" ? Type(BFloat16Type::get(&getContext()))
                                    : Type(Float16Type::get(&getContext()));
    m.headDim = k.headDim;
    m.valueDim = k.valueDim;
    m.layout = tiling.getSmemLayout().str();
    m.warps = 0;
    m.volta = volta;
    if (k.headDim % 16 != 0 || k.valueDim % 16 != 0) {
      op->emitRemark("SIMT kernel: the tensor-core kernel needs head dims that are multiples "
                     "of 16, not ")
          << k.headDim << " and " << k.valueDim;
      return m;
    }
    // Warps and 16-row tiles per warp from the plan; each warp's registers
    // hold its Q fragments, scores and output accumulators: at most 128 per
    // thread, so that with addresses and masks the kernel stays within 255
    // registers (160 spilled at head dim 64 in ptxas -v).
    // (Volta: one 16-row tile per warp, 4 dims of a row per register pair.)
    int64_t warps = std::clamp<int64_t>(tiling.getWarps(), 1, 8);
    int64_t mTiles = volta ? 1 : std::clamp<int64_t>(tiling.getTileQ() / 16, 1, 2);
    int64_t tileKv = std::max<int64_t>(tiling.getTileKv() / 16 * 16, 16);
    auto registers = [&] {
      if (volta)
        return (k.headDim + tileKv + k.valueDim) / 2;
      return mTiles * (k.headDim / 16 * 4 + k.valueDim / 8 * 4 + tileKv / 8 * 4);
    };
    while (registers() > 128 && tileKv > (volta ? 16 : 32))
      tileKv /= 2;
    while (registers() > 128 && mTiles > 1)
      --mTiles;
    // Still too many (head dims above 128): Q's fragments stay in shared
    // memory, reloaded per use (ptxas spilled 364 bytes at head dim 256).
    bool qInShared = !volta && registers() > 128;
    SharedLayout q = SharedLayout::of(m.layout, k.headDim);
    SharedLayout v = SharedLayout::of(m.layout, k.valueDim);
    auto sharedBytes = [&] {
      // Volta's P tile (rows padded by 8) follows the operands.
      int64_t probabilities = volta ? warps * 16 * (tileKv + 8) : 0;
      int64_t queries = warps * mTiles * 16 * q.rowElements;
      int64_t keysValues = tileKv * (q.rowElements + v.rowElements);
      return 2 * ((qInShared ? queries + keysValues : std::max(queries, keysValues)) +
                  probabilities);
    };
    while (sharedBytes() > kSharedBudgetBytes && tileKv > 16)
      tileKv /= 2;
    while (sharedBytes() > kSharedBudgetBytes && warps > 1)
      warps /= 2;
    if (sharedBytes() > kSharedBudgetBytes) {
      op->emitRemark("SIMT kernel: head dims ")
          << k.headDim << " and " << k.valueDim << " do not fit the tensor-core kernel's tiles";
      return m;
    }
    m.warps = warps;
    m.mTiles = mTiles;
    m.tileKv = tileKv;
    m.qInShared = qInShared;
    return m;
  }

  void runOnOperation() override {
    std::string error;
    FailureOr<AttentionTarget> planTarget = getAttentionTarget(target, 0, 0, 0, error);
    if (precision != "f32" && precision != "bf16" && precision != "f16") {
      getOperation()->emitError("hasten-gpu-attention: unknown precision '")
          << precision << "' (expected f32, bf16 or f16)";
      return signalPassFailure();
    }
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
      std::optional<MmaKernel> tensorCores;
      if (!decode && precision != "f32") {
        tensorCores = planMma(op, k, tiling, *planTarget);
        if (!tensorCores)
          continue; // failed, or left to the SIMT kernel below with a remark
      }
      // Every kernel reads a paged cache's blocks in place through the table.
      Operands operands = prepare(b, op, /*readThroughTable=*/true);
      if (decode)
        lowerDecode(b, k, operands);
      else if (tensorCores && tensorCores->warps > 0 && tensorCores->volta)
        lowerPrefillVolta(b, k, *tensorCores, operands);
      else if (tensorCores && tensorCores->warps > 0)
        lowerPrefillMma(b, k, *tensorCores, operands);
      else
        lowerPrefill(b, k, operands);
      finish(b, op, operands);
    }
    // Paged reads no kernel took (prefill, or attention left to the tiled
    // lowering) gather their blocks.
    hasten::expandPagedKVReads(getOperation());
  }
};

} // namespace
