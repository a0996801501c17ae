//===- GpuKernelBuilder.h - helpers for kernels built in IR -----*- C++ -*-===//
//
// Loops and conditionals with their terminators, as the kernel generators
// (--hasten-gpu-attention, --hasten-gpu-matmul) write them.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_PASSES_GPUKERNELBUILDER_H
#define HASTEN_PASSES_GPUKERNELBUILDER_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Builders.h"

namespace hasten {

/// `v` widened to f32 (kernels compute in f32 whatever their operands).
inline mlir::Value toF32(mlir::OpBuilder &b, mlir::Location loc, mlir::Value v) {
  if (v.getType().isF32())
    return v;
  return mlir::arith::ExtFOp::create(b, loc, b.getF32Type(), v);
}

struct KernelBuilder {
  mlir::OpBuilder &b;
  mlir::Location loc;

  mlir::Value index(int64_t v) {
    return mlir::arith::ConstantIndexOp::create(b, loc, v).getResult();
  }
  mlir::Value f32(float v) {
    return mlir::arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v));
  }

  /// Unsigned index arithmetic with constants, as kernels address lanes
  /// and tiles.
  mlir::Value div(mlir::Value x, int64_t d) {
    return mlir::arith::DivUIOp::create(b, loc, x, index(d));
  }
  mlir::Value rem(mlir::Value x, int64_t d) {
    return mlir::arith::RemUIOp::create(b, loc, x, index(d));
  }
  mlir::Value mul(mlir::Value x, int64_t y) {
    return mlir::arith::MulIOp::create(b, loc, x, index(y));
  }
  mlir::Value add(mlir::Value x, mlir::Value y) {
    return mlir::arith::AddIOp::create(b, loc, x, y);
  }
  /// x + y, or x itself for y = 0.
  mlir::Value addc(mlir::Value x, int64_t y) { return y == 0 ? x : add(x, index(y)); }

  /// An scf.for whose body `body` builds, given the induction variable and
  /// the iteration arguments, returning the values to yield.
  mlir::scf::ForOp
  forLoop(mlir::Value lb, mlir::Value ub, mlir::Value step, mlir::ValueRange init,
          llvm::function_ref<llvm::SmallVector<mlir::Value>(mlir::Value, mlir::ValueRange)> body) {
    auto loop = mlir::scf::ForOp::create(b, loc, lb, ub, step, init);
    mlir::OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    llvm::SmallVector<mlir::Value> yielded =
        body(loop.getInductionVar(), loop.getRegionIterArgs());
    if (loop.getBody()->mightHaveTerminator())
      loop.getBody()->getTerminator()->erase();
    b.setInsertionPointToEnd(loop.getBody());
    mlir::scf::YieldOp::create(b, loc, yielded);
    return loop;
  }

  /// An scf.if without results or else.
  void ifThen(mlir::Value cond, llvm::function_ref<void()> body) {
    auto i = mlir::scf::IfOp::create(b, loc, cond, /*withElseRegion=*/false);
    mlir::OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(i.thenBlock());
    body();
  }
};

} // namespace hasten

#endif // HASTEN_PASSES_GPUKERNELBUILDER_H
