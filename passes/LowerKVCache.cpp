//===- LowerKVCache.cpp - KV caches as buffers written in place ------------===//
//
// A !hasten.kv_cache argument becomes the runtime-owned buffers behind it,
// appends become copies of the new tokens only, and views read the cache
// where it lies (contiguous) or gather its blocks (paged).
//
//===----------------------------------------------------------------------===//

#include "AttentionCalls.h"
#include "PagedKVReads.h"
#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"

namespace hasten {
#define GEN_PASS_DEF_LOWERKVCACHE
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;
using namespace hasten;

namespace {

constexpr int32_t kOnnxFloat = 1;
constexpr int32_t kOnnxInt32 = 6;
constexpr int32_t kOnnxFloat16 = 10;
constexpr int32_t kOnnxBFloat16 = 16;

/// The buffers one cache argument lowered to.
struct CacheBuffers {
  KVCacheType type;
  /// Contiguous: [layers, 2, kv_heads, capacity, head_dim].
  /// Paged: [blocks, layers, 2, kv_heads, block_size, head_dim].
  Value storage;
  /// Paged only: [capacity / block_size] x i32, sequence block -> pool block.
  Value blockTable;
};

MemRefType storageType(KVCacheType type) {
  SmallVector<int64_t> shape;
  if (type.isPaged())
    shape = {ShapedType::kDynamic, type.getNumLayers(), 2, type.getNumKvHeads(),
             type.getBlockSize(), type.getHeadDim()};
  else
    shape = {type.getNumLayers(), 2, type.getNumKvHeads(), type.getCapacity(),
             type.getHeadDim()};
  return MemRefType::get(shape, type.getElementType());
}

SmallVector<OpFoldResult> indexAttrs(OpBuilder &b, ArrayRef<int64_t> values) {
  SmallVector<OpFoldResult> result;
  for (int64_t v : values)
    result.push_back(b.getIndexAttr(v));
  return result;
}

/// Writes `tokens` ([1, kv_heads, n, head_dim]) of layer `layer`, part
/// `part` (0 keys, 1 values) at positions [position, position + n).
void lowerAppendPart(OpBuilder &b, Location loc, const CacheBuffers &cache, Value tokens,
                     int64_t layer, int64_t part, Value position) {
  KVCacheType type = cache.type;
  int64_t heads = type.getNumKvHeads(), dim = type.getHeadDim();
  auto tokensType = cast<RankedTensorType>(tokens.getType());
  if (!type.isPaged()) {
    // One subview of the slab; the copy writes the new tokens only.
    OpFoldResult count = tensor::getMixedSize(b, loc, tokens, 2);
    SmallVector<OpFoldResult> offsets = {b.getIndexAttr(layer), b.getIndexAttr(part),
                                         b.getIndexAttr(0), position, b.getIndexAttr(0)};
    SmallVector<OpFoldResult> sizes = {b.getIndexAttr(1), b.getIndexAttr(1),
                                       b.getIndexAttr(heads), count, b.getIndexAttr(dim)};
    Value target = memref::SubViewOp::create(b, loc, cache.storage, offsets, sizes,
                                             indexAttrs(b, {1, 1, 1, 1, 1}));
    SmallVector<int64_t> shape5 = {1, 1, heads, tokensType.getDimSize(2), dim};
    Value source = tensor::ExpandShapeOp::create(
        b, loc, RankedTensorType::get(shape5, tokensType.getElementType()), tokens,
        ArrayRef<ReassociationIndices>{{0, 1}, {2}, {3}, {4}},
        SmallVector<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1), b.getIndexAttr(heads),
                                  count, b.getIndexAttr(dim)});
    bufferization::MaterializeInDestinationOp::create(b, loc, TypeRange{}, source, target,
                                                      /*restrict=*/true, /*writable=*/true);
    return;
  }
  // Paged: one parallel loop over the new tokens' elements, each stored in
  // its block's slot (the block from the table), so that on a GPU it is one
  // kernel and no host code reads the table.
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  Value count = tensor::DimOp::create(b, loc, tokens, 2);
  Value blockSize = arith::ConstantIndexOp::create(b, loc, type.getBlockSize());
  Value source = bufferization::ToBufferOp::create(
      b, loc, MemRefType::get(tokensType.getShape(), tokensType.getElementType()), tokens,
      /*readOnly=*/true);
  Value layerIndex = arith::ConstantIndexOp::create(b, loc, layer);
  Value partIndex = arith::ConstantIndexOp::create(b, loc, part);
  scf::ParallelOp::create(
      b, loc, ValueRange{zero, zero, zero},
      ValueRange{count, arith::ConstantIndexOp::create(b, loc, heads),
                 arith::ConstantIndexOp::create(b, loc, dim)},
      ValueRange{one, one, one}, [&](OpBuilder &nb, Location nl, ValueRange ivs) {
        Value t = ivs[0], h = ivs[1], d = ivs[2];
        Value p = arith::AddIOp::create(nb, nl, position, t);
        Value logical = arith::DivUIOp::create(nb, nl, p, blockSize);
        Value slot = arith::RemUIOp::create(nb, nl, p, blockSize);
        Value physical = arith::IndexCastOp::create(
            nb, nl, nb.getIndexType(),
            memref::LoadOp::create(nb, nl, cache.blockTable, ValueRange{logical}));
        Value element = memref::LoadOp::create(nb, nl, source, ValueRange{zero, h, t, d});
        memref::StoreOp::create(nb, nl, element, cache.storage,
                                ValueRange{physical, layerIndex, partIndex, h, slot, d});
      });
}

/// Layer `layer`, part `part`, positions [0, length) as [1, kv_heads, length,
/// head_dim].
Value lowerViewPart(OpBuilder &b, Location loc, const CacheBuffers &cache, int64_t layer,
                    int64_t part, Value length, RankedTensorType resultType) {
  KVCacheType type = cache.type;
  int64_t heads = type.getNumKvHeads(), dim = type.getHeadDim();
  if (!type.isPaged()) {
    SmallVector<OpFoldResult> offsets = indexAttrs(b, {layer, part, 0, 0, 0});
    SmallVector<OpFoldResult> sizes = {b.getIndexAttr(1), b.getIndexAttr(1),
                                       b.getIndexAttr(heads), length, b.getIndexAttr(dim)};
    auto view = memref::SubViewOp::create(b, loc, cache.storage, offsets, sizes,
                                          indexAttrs(b, {1, 1, 1, 1, 1}));
    auto viewType = cast<MemRefType>(view.getType());
    // restrict: nothing else turns this region into a tensor, and nothing
    // writes it while the attention reads it.
    Value tensor = bufferization::ToTensorOp::create(
        b, loc, RankedTensorType::get(viewType.getShape(), viewType.getElementType()), view,
        /*restrict=*/true, /*writable=*/false);
    return tensor::CollapseShapeOp::create(b, loc, resultType, tensor,
                                           ArrayRef<ReassociationIndices>{{0, 1}, {2}, {3}, {4}});
  }
  // Paged: read through the block table, which a consumer that can (the GPU
  // decode attention kernel) does in place; gathered otherwise
  // (expandPagedKVReads).
  return PagedKVReadOp::create(b, loc, resultType, cache.storage, cache.blockTable, length,
                               layer, part);
}

struct LowerKVCachePass : public hasten::impl::LowerKVCacheBase<LowerKVCachePass> {
  using LowerKVCacheBase::LowerKVCacheBase;

  void runOnOperation() override {
    // Signatures first, so that a decode step finds its entry's buffers
    // (a paged cache's pool and block table) whatever the functions' order.
    DenseMap<Value, CacheBuffers> caches;
    for (auto func : getOperation().getOps<func::FuncOp>())
      if (!func.isExternal() && failed(lowerSignature(func, caches)))
        return signalPassFailure();
    for (auto func : getOperation().getOps<func::FuncOp>())
      if (!func.isExternal() &&
          (failed(lowerDecodeSteps(func, caches)) || failed(lowerCacheOps(func, caches))))
        return signalPassFailure();
    if (!keepPagedReads)
      expandPagedKVReads(getOperation());
  }

  /// hasten.decode_step -> func.call of its entry, the operands in the
  /// callee's order (by role) and cast to its types: the cache's buffers
  /// (storage, and a paged cache's block table) are the caller's.
  LogicalResult lowerDecodeSteps(func::FuncOp func, const DenseMap<Value, CacheBuffers> &caches) {
    SmallVector<DecodeStepOp> steps;
    func.walk([&](DecodeStepOp op) { steps.push_back(op); });
    for (DecodeStepOp step : steps) {
      auto callee = SymbolTable::lookupNearestSymbolFrom<func::FuncOp>(step, step.getCalleeAttr());
      if (!callee)
        return step.emitError("'") << step.getCallee() << "' is not a function";
      auto cache = caches.find(step.getCache());
      if (cache == caches.end())
        return step.emitError("the cache must be a function argument of ") << func.getSymName();
      OpBuilder b(step);
      SmallVector<Value> operands;
      for (unsigned i = 0; i < callee.getNumArguments(); ++i) {
        auto role = callee.getArgAttrOfType<StringAttr>(i, HastenDialect::kRoleAttrName);
        std::optional<TensorRole> parsed = role ? symbolizeTensorRole(role.getValue())
                                                : std::nullopt;
        Type type = callee.getArgumentTypes()[i];
        if (parsed == TensorRole::TokenIds)
          operands.push_back(step.getTokens().getType() == type
                                 ? Value(step.getTokens())
                                 : Value(tensor::CastOp::create(b, step.getLoc(), type,
                                                                step.getTokens())));
        else if ((parsed == TensorRole::KVCache || parsed == TensorRole::KVBlockPool) &&
                 cache->second.storage.getType() == type)
          operands.push_back(cache->second.storage);
        else if (parsed == TensorRole::KVBlockTable && cache->second.blockTable &&
                 cache->second.blockTable.getType() == type)
          operands.push_back(cache->second.blockTable);
        else if (parsed == TensorRole::PastLength)
          operands.push_back(step.getPastLength());
        else
          return step.emitError("'") << step.getCallee() << "' takes argument " << i
                                     << " that this decode step does not provide (a cache of "
                                        "another type?)";
      }
      auto call = func::CallOp::create(b, step.getLoc(), callee, operands);
      Value logits = call.getResult(0);
      if (logits.getType() != step.getType())
        logits = tensor::CastOp::create(b, step.getLoc(), step.getType(), logits);
      step.replaceAllUsesWith(logits);
      step.erase();
    }
    return success();
  }

  /// Each cache argument becomes its buffers: the storage, and after a
  /// paged cache's pool its block table (`draft_`-named, with the draft's
  /// table role, for a spec_step's draft cache).
  LogicalResult lowerSignature(func::FuncOp func, DenseMap<Value, CacheBuffers> &caches) {
    Block &body = func.getBody().front();
    OpBuilder b(func.getContext());
    for (unsigned i = 0; i < func.getNumArguments(); ++i) {
      auto type = dyn_cast<KVCacheType>(func.getArgumentTypes()[i]);
      if (!type)
        continue;
      BlockArgument arg = body.getArgument(i);
      MemRefType storage = storageType(type);
      CacheBuffers buffers{type, arg, Value()};
      arg.setType(storage);
      if (type.isPaged()) {
        auto role = func.getArgAttrOfType<StringAttr>(i, HastenDialect::kRoleAttrName);
        bool draft = role && symbolizeTensorRole(role.getValue()) == TensorRole::DraftKVCache;
        func.setArgAttr(i, HastenDialect::kOnnxNameAttrName,
                        b.getStringAttr(draft ? "draft_kv_block_pool" : "kv_block_pool"));
        func.setArgAttr(i, HastenDialect::kRoleAttrName,
                        b.getStringAttr(stringifyTensorRole(draft ? TensorRole::DraftKVCache
                                                                  : TensorRole::KVBlockPool)));
        auto tableType = MemRefType::get({type.getNumBlocks()}, b.getI32Type());
        if (failed(func.insertArguments({i + 1}, {tableType}, {}, {func.getLoc()})))
          return failure();
        buffers.blockTable = body.getArgument(i + 1);
        func.setArgAttr(i + 1, HastenDialect::kOnnxNameAttrName,
                        b.getStringAttr(draft ? "draft_kv_block_table" : "kv_block_table"));
        func.setArgAttr(i + 1, HastenDialect::kRoleAttrName,
                        b.getStringAttr(stringifyTensorRole(
                            draft ? TensorRole::DraftKVBlockTable : TensorRole::KVBlockTable)));
        func.setArgAttr(i + 1, HastenDialect::kOnnxElemTypeAttrName,
                        b.getI32IntegerAttr(kOnnxInt32));
      }
      // The ONNX element type of the storage, for the manifest.
      Type element = type.getElementType();
      func.setArgAttr(i, HastenDialect::kOnnxElemTypeAttrName,
                      b.getI32IntegerAttr(element.isBF16()  ? kOnnxBFloat16
                                          : element.isF16() ? kOnnxFloat16
                                                            : kOnnxFloat));
      caches[arg] = buffers;
    }
    func.setType(FunctionType::get(func.getContext(), body.getArgumentTypes(),
                                   func.getResultTypes()));
    return success();
  }

  LogicalResult lowerCacheOps(func::FuncOp func, const DenseMap<Value, CacheBuffers> &caches) {
    OpBuilder b(func.getContext());
    SmallVector<Operation *> cacheOps;
    func.walk([&](Operation *op) {
      if (isa<KVCacheAppendOp, KVCacheViewOp>(op))
        cacheOps.push_back(op);
    });
    for (Operation *op : cacheOps) {
      if (auto append = dyn_cast<KVCacheAppendOp>(op)) {
        auto it = caches.find(append.getCache());
        if (it == caches.end())
          return append.emitError("the cache must be a function argument of ")
                 << func.getSymName();
        b.setInsertionPoint(append);
        lowerAppendPart(b, append.getLoc(), it->second, append.getKey(), append.getLayer(), 0,
                        append.getPosition());
        lowerAppendPart(b, append.getLoc(), it->second, append.getValue(), append.getLayer(),
                        1, append.getPosition());
        append.erase();
        continue;
      }
      if (auto view = dyn_cast<KVCacheViewOp>(op)) {
        auto it = caches.find(view.getCache());
        if (it == caches.end())
          return view.emitError("the cache must be a function argument of ")
                 << func.getSymName();
        // Attention reads a paged cache through its block table; only
        // other readers need the blocks gathered.
        if (it->second.type.isPaged()) {
          PagedKeysValues paged{it->second.storage, it->second.blockTable,
                                (int64_t)view.getLayer(), view.getLength()};
          SmallVector<AttentionOp> readers;
          for (Operation *user : view.getKeys().getUsers())
            if (auto attention = dyn_cast<AttentionOp>(user); attention && attentionKernel)
              if (attention.getKey() == view.getKeys() &&
                  attention.getValue() == view.getValues() && canCallAttentionKernel(attention))
                readers.push_back(attention);
          for (AttentionOp attention : readers)
            replaceWithAttentionCall(b, attention, &paged);
          if (view.getKeys().use_empty() && view.getValues().use_empty()) {
            view.erase();
            continue;
          }
        }
        b.setInsertionPoint(view);
        Value keys = lowerViewPart(b, view.getLoc(), it->second, view.getLayer(), 0,
                                   view.getLength(), view.getKeys().getType());
        Value values = lowerViewPart(b, view.getLoc(), it->second, view.getLayer(), 1,
                                     view.getLength(), view.getValues().getType());
        view.getKeys().replaceAllUsesWith(keys);
        view.getValues().replaceAllUsesWith(values);
        view.erase();
      }
    }
    return success();
  }
};
} // namespace
