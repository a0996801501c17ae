//===- AlignSharedMemory.cpp - kernels' shared buffers 16-byte aligned ----===//
//
// NVPTX declares a workgroup buffer with its element's alignment unless the
// attribution says otherwise, and then splits every vector access to it
// that it cannot prove aligned into scalar ones: a 16-byte store of 8 bf16
// becomes 8 stores. The kernel generators stage tiles 16 bytes at a time
// and ldmatrix reads 16-byte rows, so every buffer gets 16 (see Passes.td).
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"

namespace hasten {
#define GEN_PASS_DEF_ALIGNSHAREDMEMORY
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

struct AlignSharedMemoryPass
    : public hasten::impl::AlignSharedMemoryBase<AlignSharedMemoryPass> {
  using Base::Base;

  void runOnOperation() override {
    if (alignment <= 0 || (alignment & (alignment - 1)) != 0) {
      getOperation()->emitError("hasten-align-shared-memory: alignment ")
          << alignment.getValue() << " is not a power of two";
      return signalPassFailure();
    }
    StringAttr name = StringAttr::get(&getContext(), LLVM::LLVMDialect::getAlignAttrName());
    getOperation()->walk([&](gpu::GPUFuncOp kernel) {
      for (unsigned i = 0, e = kernel.getNumWorkgroupAttributions(); i < e; ++i) {
        auto current = dyn_cast_or_null<IntegerAttr>(kernel.getWorkgroupAttributionAttr(i, name));
        if (current && current.getInt() >= alignment)
          continue;
        kernel.setWorkgroupAttributionAttr(
            i, name, IntegerAttr::get(IntegerType::get(&getContext(), 64), alignment));
      }
    });
  }
};

} // namespace
