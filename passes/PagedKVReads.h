//===- PagedKVReads.h - hasten.paged_kv.read as a gather ---------*- C++ -*-===//
//
// A paged KV view that no consumer reads through the block table becomes a
// gather of its blocks; --hasten-lower-kv-cache and --hasten-gpu-attention
// (for the reads its kernels did not take) share this.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_PASSES_PAGEDKVREADS_H
#define HASTEN_PASSES_PAGEDKVREADS_H

#include "hasten/Dialect/Hasten/HastenDialect.h"

#include "mlir/IR/Builders.h"

namespace hasten {

/// The tensor `read` stands for, gathered: each element loaded from its
/// block through the table.
mlir::Value expandPagedKVRead(mlir::OpBuilder &b, PagedKVReadOp read);

/// Expands every paged read under `root` that has users; erases the others.
void expandPagedKVReads(mlir::Operation *root);

/// What reading one layer of a paged cache takes, as index values.
struct PagedLayer {
  mlir::Value pool, table, blockSize, layer;
};
/// `read`'s pool, table and layer, with the block size and layer as index
/// values created at the insertion point.
PagedLayer pagedLayer(mlir::OpBuilder &b, PagedKVReadOp read);

/// Position `position`'s pool block (`table[position / block_size]`) and
/// slot in it (`position % block_size`).
std::pair<mlir::Value, mlir::Value> locatePaged(mlir::OpBuilder &b, mlir::Location loc,
                                                const PagedLayer &cache, mlir::Value position);

/// One position's element of a paged cache: slot `position % block_size` of
/// pool block `table[position / block_size]`, part `part` (keys 0, values
/// 1), head `head`, dim `dim`.
mlir::Value loadPagedElement(mlir::OpBuilder &b, mlir::Location loc, const PagedLayer &cache,
                             mlir::Value part, mlir::Value head, mlir::Value position,
                             mlir::Value dim);

} // namespace hasten

#endif // HASTEN_PASSES_PAGEDKVREADS_H
