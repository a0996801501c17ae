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
#include "mlir/IR/TypeUtilities.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace hasten {
#define GEN_PASS_DEF_APPROXIMATEMATH
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

/// 2^x on f32 (scalar or vector). Upstream has no exp2 approximation (its
/// expansion turns exp2 into exp, about twice the work); this is the short
/// form that base-2 softmax wants. x is clamped to [-127, 128]; adding and
/// subtracting 1.5 * 2^23 rounds it to the nearest integer n (the sum's
/// bits then hold n in their low mantissa bits: no float-to-int
/// conversion); p(f), f = x - n in [-1/2, 1/2], is a degree-5 fit of 2^f
/// (relative error 2.4e-7 in f32); 2^n is built from n's bits. x <= -126.5
/// gives exactly 0 (a zero biased exponent), x >= 127.5 gives inf, NaN
/// stays NaN.
struct Exp2Approximation : OpRewritePattern<math::Exp2Op> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(math::Exp2Op op, PatternRewriter &rewriter) const override {
    Type type = op.getType();
    if (!getElementTypeOrSelf(type).isF32())
      return rewriter.notifyMatchFailure(op, "not f32");
    Location loc = op.getLoc();
    auto vector = dyn_cast<VectorType>(type);
    Type i32 = rewriter.getI32Type();
    Type intType = vector ? Type(vector.clone(i32)) : i32;
    auto splat = [&](Type t, TypedAttr scalar) -> Value {
      if (auto v = dyn_cast<VectorType>(t))
        return arith::ConstantOp::create(rewriter, loc, v, DenseElementsAttr::get(v, scalar));
      return arith::ConstantOp::create(rewriter, loc, scalar);
    };
    auto f = [&](float v) { return splat(type, rewriter.getF32FloatAttr(v)); };
    auto i = [&](int32_t v) { return splat(intType, rewriter.getI32IntegerAttr(v)); };
    Value x = arith::MinimumFOp::create(
        rewriter, loc, arith::MaximumFOp::create(rewriter, loc, op.getOperand(), f(-127.0f)),
        f(128.0f));
    Value magic = f(12582912.0f); // 1.5 * 2^23, bits 0x4B400000
    Value shifted = arith::AddFOp::create(rewriter, loc, x, magic);
    Value n = arith::SubFOp::create(rewriter, loc, shifted, magic);
    Value frac = arith::SubFOp::create(rewriter, loc, x, n);
    const float coefficients[] = {1.3276447e-3f, 9.6755335e-3f, 5.5507131e-2f,
                                  2.4022120e-1f, 6.9314694e-1f, 1.0000001f};
    Value p = f(coefficients[0]);
    for (float c : ArrayRef<float>(coefficients).drop_front())
      p = math::FmaOp::create(rewriter, loc, p, frac, f(c));
    // (bits(shifted) - 0x4B400000 + 127) << 23: n + 127 in the exponent.
    Value bits = arith::BitcastOp::create(rewriter, loc, intType, shifted);
    Value biased = arith::SubIOp::create(rewriter, loc, bits, i(0x4B400000 - 127));
    Value pow2 = arith::BitcastOp::create(
        rewriter, loc, type, arith::ShLIOp::create(rewriter, loc, biased, i(23)));
    rewriter.replaceOpWithNewOp<arith::MulFOp>(op, p, pow2);
    return success();
  }
};

struct ApproximateMathPass : public hasten::impl::ApproximateMathBase<ApproximateMathPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateMathPolynomialApproximationPatterns(patterns);
    patterns.add<Exp2Approximation>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};
} // namespace
