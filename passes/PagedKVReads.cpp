//===- PagedKVReads.cpp - hasten.paged_kv.read as a gather ----------------===//

#include "PagedKVReads.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

hasten::PagedLayer hasten::pagedLayer(OpBuilder &b, PagedKVReadOp read) {
  Location loc = read.getLoc();
  MemRefType pool = read.getPool().getType();
  Value blockSize = pool.isDynamicDim(4)
                        ? memref::DimOp::create(b, loc, read.getPool(), 4).getResult()
                        : arith::ConstantIndexOp::create(b, loc, pool.getDimSize(4)).getResult();
  return {read.getPool(), read.getTable(), blockSize,
          arith::ConstantIndexOp::create(b, loc, static_cast<int64_t>(read.getLayer()))};
}

std::pair<Value, Value> hasten::locatePaged(OpBuilder &b, Location loc, const PagedLayer &cache,
                                            Value position) {
  Value logical = arith::DivUIOp::create(b, loc, position, cache.blockSize);
  Value slot = arith::RemUIOp::create(b, loc, position, cache.blockSize);
  Value physical = arith::IndexCastOp::create(
      b, loc, b.getIndexType(), memref::LoadOp::create(b, loc, cache.table, logical));
  return {physical, slot};
}

Value hasten::loadPagedElement(OpBuilder &b, Location loc, const PagedLayer &cache, Value part,
                               Value head, Value position, Value dim) {
  auto [block, slot] = locatePaged(b, loc, cache, position);
  return memref::LoadOp::create(b, loc, cache.pool,
                                ValueRange{block, cache.layer, part, head, slot, dim});
}

Value hasten::expandPagedKVRead(OpBuilder &b, PagedKVReadOp read) {
  Location loc = read.getLoc();
  auto type = cast<RankedTensorType>(read.getType());
  SmallVector<Value> dynamicSizes;
  for (int64_t d = 0; d < type.getRank(); ++d)
    if (type.isDynamicDim(d))
      dynamicSizes.push_back(
          d == 2 ? read.getLength()
                 : memref::DimOp::create(b, loc, read.getPool(), d == 1 ? 3 : 5).getResult());
  PagedLayer cache = pagedLayer(b, read);
  Value part = arith::ConstantIndexOp::create(b, loc, static_cast<int64_t>(read.getPart()));
  return tensor::GenerateOp::create(
      b, loc, type, dynamicSizes, [&](OpBuilder &nb, Location nl, ValueRange idx) {
        tensor::YieldOp::create(nb, nl,
                                loadPagedElement(nb, nl, cache, part, idx[1], idx[2], idx[3]));
      });
}

void hasten::expandPagedKVReads(Operation *root) {
  SmallVector<PagedKVReadOp> reads;
  root->walk([&](PagedKVReadOp read) { reads.push_back(read); });
  for (PagedKVReadOp read : reads) {
    if (!read->use_empty()) {
      OpBuilder b(read);
      read.getResult().replaceAllUsesWith(expandPagedKVRead(b, read));
    }
    read.erase();
  }
}
