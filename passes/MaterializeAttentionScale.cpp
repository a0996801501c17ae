//===- MaterializeAttentionScale.cpp - explicit attention scales ------------===//
//
// Writes the default 1/sqrt(head_dim) scale into hasten.attention ops so that
// every consumer reads the same attribute.
//
//===----------------------------------------------------------------------===//

#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/Passes/Passes.h"

#include "mlir/IR/Builders.h"

namespace hasten {
#define GEN_PASS_DEF_MATERIALIZEATTENTIONSCALE
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;
using namespace hasten;

namespace {
struct MaterializeAttentionScalePass
    : public hasten::impl::MaterializeAttentionScaleBase<
          MaterializeAttentionScalePass> {
  using Base::Base;

  void runOnOperation() override {
    getOperation()->walk([&](AttentionOp op) {
      if (op.getScale())
        return;
      std::optional<double> scale = op.getEffectiveScale();
      if (!scale) {
        if (reportDynamic)
          op.emitRemark("scale stays implicit: head_dim is dynamic");
        return;
      }
      Builder builder(op.getContext());
      op.setScaleAttr(builder.getF32FloatAttr(static_cast<float>(*scale)));
    });
  }
};
} // namespace
