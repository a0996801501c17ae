//===- ApproximateMath.cpp - inline polynomials instead of libm -----------===//
//
// One libm call per element keeps loops scalar; MLIR's polynomial
// approximations are plain arithmetic that LLVM vectorizes.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Math/Transforms/Approximation.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace hasten {
#define GEN_PASS_DEF_APPROXIMATEMATH
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {
struct ApproximateMathPass : public hasten::impl::ApproximateMathBase<ApproximateMathPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateMathPolynomialApproximationPatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};
} // namespace
