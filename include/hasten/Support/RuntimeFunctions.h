//===- RuntimeFunctions.h - declaring the runtime's functions -*- C++ -*-===//
//
// Generated code calls the runtime through private func.func declarations:
// the kernels the passes call (matmuls, attention) and the scalar helpers
// the importer calls (numbers to strings and back). One declaration per
// module and name, with the C interface the runtime implements.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_SUPPORT_RUNTIMEFUNCTIONS_H
#define HASTEN_SUPPORT_RUNTIMEFUNCTIONS_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"

namespace hasten {

/// The private declaration of runtime function `name` (created once).
inline mlir::func::FuncOp declareRuntimeFunction(mlir::ModuleOp module, llvm::StringRef name,
                                                 mlir::TypeRange inputs,
                                                 mlir::TypeRange results = {}) {
  if (auto existing = module.lookupSymbol<mlir::func::FuncOp>(name))
    return existing;
  mlir::OpBuilder b = mlir::OpBuilder::atBlockBegin(module.getBody());
  auto fn =
      mlir::func::FuncOp::create(b, module.getLoc(), name, b.getFunctionType(inputs, results));
  fn.setPrivate();
  fn->setAttr("llvm.emit_c_interface", b.getUnitAttr());
  return fn;
}

} // namespace hasten

#endif // HASTEN_SUPPORT_RUNTIMEFUNCTIONS_H
