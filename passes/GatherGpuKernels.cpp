//===- GatherGpuKernels.cpp - one GPU module for all of a model's kernels --===//
//
// One module means one PTX file and one ptxas run per architecture at
// compile time, and one driver module load at run time, however many
// kernels the model has.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/SymbolTable.h"

namespace hasten {
#define GEN_PASS_DEF_GATHERGPUKERNELS
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

struct GatherGpuKernelsPass
    : public hasten::impl::GatherGpuKernelsBase<GatherGpuKernelsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<gpu::GPUModuleOp> modules(module.getOps<gpu::GPUModuleOp>());
    if (modules.size() < 2)
      return;
    gpu::GPUModuleOp into = modules.front();
    SymbolTable intoSymbols(into);
    // Old (module, function) -> new function name in `into`.
    DenseMap<std::pair<StringAttr, StringAttr>, StringAttr> moved;
    for (gpu::GPUModuleOp from : ArrayRef(modules).drop_front()) {
      if (from.getTargetsAttr() != into.getTargetsAttr() ||
          from->getDiscardableAttrDictionary() != into->getDiscardableAttrDictionary()) {
        from.emitError("kernels with another target than '") << into.getName()
                                                              << "' cannot be gathered";
        return signalPassFailure();
      }
      for (Operation &op : llvm::make_early_inc_range(from.getBody()->getOperations())) {
        auto symbol = dyn_cast<SymbolOpInterface>(op);
        if (!symbol) {
          from.emitError("a GPU module with a non-symbol op: ") << op.getName();
          return signalPassFailure();
        }
        StringAttr oldName = symbol.getNameAttr();
        op.remove();
        // The kernel takes its module's name (unique among host symbols);
        // anything else keeps its own unless that clashes.
        if (isa<gpu::GPUFuncOp>(op) && !intoSymbols.lookup(from.getName()))
          symbol.setName(from.getNameAttr());
        StringAttr newName = intoSymbols.insert(&op);
        moved[{from.getNameAttr(), oldName}] = newName;
      }
      from.erase();
    }
    module.walk([&](gpu::LaunchFuncOp launch) {
      SymbolRefAttr kernel = launch.getKernel();
      auto it = moved.find({kernel.getRootReference(), kernel.getLeafReference()});
      if (it == moved.end())
        return;
      launch.setKernelAttr(SymbolRefAttr::get(
          into.getNameAttr(), {FlatSymbolRefAttr::get(it->second)}));
    });
  }
};

} // namespace
