//===- LowerBf16Mma.cpp - bf16 nvgpu.mma.sync as nvvm.mma.sync ------------===//
//
// Upstream's NVGPU-to-NVVM conversion deduces no PTX type for bf16
// operands of nvgpu.mma.sync (it knows f16, tf32, integers and f64), so the
// tensor-core attention's bf16 products are lowered here, in the device
// module before that conversion: each 32-bit register of two bf16 halves
// becomes the i32 that nvvm.mma.sync takes for bf16.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

namespace hasten {
#define GEN_PASS_DEF_LOWERBF16MMA
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

struct LowerBf16MmaPass : public hasten::impl::LowerBf16MmaBase<LowerBf16MmaPass> {
  void runOnOperation() override {
    SmallVector<nvgpu::MmaSyncOp> ops;
    getOperation()->walk([&](nvgpu::MmaSyncOp op) {
      if (op.getMatrixA().getType().getElementType().isBF16())
        ops.push_back(op);
    });
    for (nvgpu::MmaSyncOp op : ops) {
      auto a = op.getMatrixA().getType(), bType = op.getMatrixB().getType();
      auto c = op.getMatrixC().getType();
      std::array<int64_t, 3> shape;
      for (auto [i, attr] : llvm::enumerate(op.getMmaShape()))
        shape[i] = cast<IntegerAttr>(attr).getInt();
      if (shape != std::array<int64_t, 3>{16, 8, 16} || a.getShape() != ArrayRef<int64_t>{4, 2} ||
          bType.getShape() != ArrayRef<int64_t>{2, 2} || c.getShape() != ArrayRef<int64_t>{2, 2} ||
          !c.getElementType().isF32()) {
        op.emitError("hasten-lower-bf16-mma: only m16n8k16 with vector<4x2xbf16>, "
                     "vector<2x2xbf16> and vector<2x2xf32> accumulators is lowered");
        return signalPassFailure();
      }
      OpBuilder b(op);
      Location loc = op.getLoc();
      auto registers = [&](Value fragment, int64_t count) {
        SmallVector<Value> regs;
        for (int64_t i = 0; i < count; ++i)
          regs.push_back(LLVM::BitcastOp::create(
              b, loc, b.getI32Type(), vector::ExtractOp::create(b, loc, fragment, i)));
        return regs;
      };
      SmallVector<Value> accumulators;
      for (int64_t i = 0; i < 4; ++i)
        accumulators.push_back(
            vector::ExtractOp::create(b, loc, op.getMatrixC(), ArrayRef<int64_t>{i / 2, i % 2}));
      Type f32 = b.getF32Type();
      auto result = LLVM::LLVMStructType::getLiteral(b.getContext(), {f32, f32, f32, f32});
      Value d = NVVM::MmaOp::create(
          b, loc, result, registers(op.getMatrixA(), 4), registers(op.getMatrixB(), 2),
          accumulators, shape, std::nullopt, std::nullopt,
          std::array<NVVM::MMATypes, 2>{NVVM::MMATypes::bf16, NVVM::MMATypes::bf16},
          std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row, NVVM::MMALayout::col});
      SmallVector<Value> elements;
      for (int64_t i = 0; i < 4; ++i)
        elements.push_back(LLVM::ExtractValueOp::create(b, loc, d, i));
      op.replaceAllUsesWith(vector::FromElementsOp::create(b, loc, c, elements).getResult());
      op.erase();
    }
  }
};

} // namespace
