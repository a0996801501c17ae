//===- RuntimeCalls.h - declaring and calling runtime kernels -*- C++ -*-===//
//
// Shared by the passes that turn ops into calls of the runtime's kernels
// (matmuls, attention): the kernels take fully dynamic strided memrefs
// through MLIR's C interface, declared with declareRuntimeFunction.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_PASSES_RUNTIMECALLS_H
#define HASTEN_PASSES_RUNTIMECALLS_H

#include "hasten/Support/RuntimeFunctions.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/BuiltinTypes.h"

namespace hasten {

/// memref<?x...x?xT, strided<[?, ...], offset: ?>> of `rank` (T: f32 by
/// default).
inline mlir::MemRefType anyStridedMemRef(mlir::MLIRContext *ctx, int64_t rank,
                                         mlir::Type element = nullptr) {
  llvm::SmallVector<int64_t> shape(rank, mlir::ShapedType::kDynamic);
  llvm::SmallVector<int64_t> strides(rank, mlir::ShapedType::kDynamic);
  return mlir::MemRefType::get(
      shape, element ? element : mlir::Float32Type::get(ctx),
      mlir::StridedLayoutAttr::get(ctx, mlir::ShapedType::kDynamic, strides));
}

} // namespace hasten

#endif // HASTEN_PASSES_RUNTIMECALLS_H
