//===- RuntimeCalls.h - declaring and calling runtime kernels -*- C++ -*-===//
//
// Shared by the passes that turn ops into calls of the runtime's kernels
// (matmuls, attention): the kernels take fully dynamic strided memrefs
// through MLIR's C interface.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_PASSES_RUNTIMECALLS_H
#define HASTEN_PASSES_RUNTIMECALLS_H

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

/// The private declaration of runtime kernel `name` (created once, with the
/// C interface the runtime implements).
inline mlir::func::FuncOp declareRuntimeFunction(mlir::ModuleOp module, llvm::StringRef name,
                                                 mlir::TypeRange inputs) {
  if (auto existing = module.lookupSymbol<mlir::func::FuncOp>(name))
    return existing;
  mlir::OpBuilder b = mlir::OpBuilder::atBlockBegin(module.getBody());
  auto fn = mlir::func::FuncOp::create(b, module.getLoc(), name,
                                       b.getFunctionType(inputs, {}));
  fn.setPrivate();
  fn->setAttr("llvm.emit_c_interface", b.getUnitAttr());
  return fn;
}

} // namespace hasten

#endif // HASTEN_PASSES_RUNTIMECALLS_H
