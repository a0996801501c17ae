//===- PromoteLoopAccumulators.cpp - reductions accumulate in registers ----===//
//
// A reduction lowered from linalg to loops loads its output element, adds
// to it and stores it back on every iteration. LLVM cannot keep that
// element in a register, since it cannot prove that the loop's other loads
// do not read it, so each step waits on a store and a reload (a LayerNorm
// row of 128 took nine cycles an element). Where this pass can prove it,
// the element becomes the loop's iter_arg: loaded once before, stored once
// after.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

namespace hasten {
#define GEN_PASS_DEF_PROMOTELOOPACCUMULATORS
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

/// Where a memref's elements may lie: in `root` (the buffer it views,
/// through subviews, casts, reshapes and views), within bytes [begin, end)
/// when known. Static buffers share one arena (PackStaticBuffers) as
/// `memref.view`s at constant offsets, which this tells apart.
struct Extent {
  Value root;
  std::optional<std::pair<int64_t, int64_t>> bytes;

  bool mayOverlap(const Extent &other) const {
    if (root != other.root)
      return false;
    if (!bytes || !other.bytes)
      return true;
    return bytes->first < other.bytes->second && other.bytes->first < bytes->second;
  }
};

Extent extentOf(Value memref) {
  Extent extent{memref, std::nullopt};
  while (Operation *def = extent.root.getDefiningOp()) {
    auto view = dyn_cast<ViewLikeOpInterface>(def);
    if (!view)
      break;
    if (auto byteView = dyn_cast<memref::ViewOp>(def); byteView && !extent.bytes) {
      auto type = byteView.getType();
      std::optional<int64_t> shift = getConstantIntValue(byteView.getByteShift());
      // Offsets count from the buffer itself, not from a view of it.
      bool ofRoot = !byteView.getSource().getDefiningOp<ViewLikeOpInterface>();
      if (shift && ofRoot && type.hasStaticShape() && type.getLayout().isIdentity() &&
          type.getElementType().isIntOrFloat())
        extent.bytes = std::make_pair(
            *shift, *shift + type.getNumElements() *
                                 int64_t(type.getElementType().getIntOrFloatBitWidth() / 8));
    }
    // Any other view keeps within what its source spans, so a known range
    // (from a view further down) stays right.
    extent.root = view.getViewSource();
  }
  return extent;
}

/// One element the loop reads and writes back: `load` then `store`, both
/// directly in the loop's body, at the same loop-invariant indices.
struct Accumulator {
  memref::LoadOp load;
  memref::StoreOp store;
};

bool sameIndices(memref::LoadOp load, memref::StoreOp store) {
  return load.getMemRef() == store.getMemRef() && load.getIndices() == store.getIndices();
}

/// The loop's accumulators, or none unless every write in the loop (nested
/// ones included) is an accumulator's store and nothing else in the loop
/// touches an accumulator's buffer.
SmallVector<Accumulator> accumulatorsOf(scf::ForOp loop) {
  SmallVector<Accumulator> found;
  Block *body = loop.getBody();
  bool writesElsewhere = false;
  loop.getBody()->walk([&](Operation *op) {
    if (auto store = dyn_cast<memref::StoreOp>(op)) {
      if (store->getBlock() != body)
        writesElsewhere = true;
      return;
    }
    if (isa<memref::LoadOp>(op) || op->hasTrait<OpTrait::IsTerminator>())
      return;
    auto effects = dyn_cast<MemoryEffectOpInterface>(op);
    if (!effects) {
      // Unknown effects (a call, a loop's region we look into anyway).
      if (!op->hasTrait<OpTrait::HasRecursiveMemoryEffects>())
        writesElsewhere = true;
      return;
    }
    if (effects.hasEffect<MemoryEffects::Write>() || effects.hasEffect<MemoryEffects::Free>())
      writesElsewhere = true;
  });
  if (writesElsewhere)
    return {};
  for (Operation &op : *body) {
    auto store = dyn_cast<memref::StoreOp>(&op);
    if (!store)
      continue;
    // Indices and buffer fixed for the whole loop.
    if (!loop.isDefinedOutsideOfLoop(store.getMemRef()) ||
        !llvm::all_of(store.getIndices(),
                      [&](Value i) { return loop.isDefinedOutsideOfLoop(i); }))
      return {};
    memref::LoadOp load;
    for (Operation &before : *body) {
      if (&before == store.getOperation())
        break;
      if (auto l = dyn_cast<memref::LoadOp>(&before); l && sameIndices(l, store)) {
        if (load)
          return {};
        load = l;
      }
    }
    if (!load)
      return {};
    found.push_back({load, store});
  }
  // No other access to an accumulator's buffer (or a view of it): another
  // load of it could read the element the loop no longer stores.
  for (Accumulator &acc : found) {
    Extent extent = extentOf(acc.store.getMemRef());
    WalkResult result = body->walk([&](Operation *op) -> WalkResult {
      Value memref;
      if (auto load = dyn_cast<memref::LoadOp>(op))
        memref = load.getMemRef();
      else if (auto store = dyn_cast<memref::StoreOp>(op))
        memref = store.getMemRef();
      if (!memref || op == acc.load.getOperation() || op == acc.store.getOperation())
        return WalkResult::advance();
      return extentOf(memref).mayOverlap(extent) ? WalkResult::interrupt()
                                                 : WalkResult::advance();
    });
    if (result.wasInterrupted())
      return {};
  }
  return found;
}

struct PromoteLoopAccumulatorsPass
    : public hasten::impl::PromoteLoopAccumulatorsBase<PromoteLoopAccumulatorsPass> {
  void runOnOperation() override {
    IRRewriter rewriter(&getContext());
    // Innermost loops first: an inner loop's promoted load and store then
    // sit in its parent's body, which may promote them in turn.
    SmallVector<scf::ForOp> loops;
    getOperation()->walk([&](scf::ForOp loop) { loops.push_back(loop); });
    for (scf::ForOp loop : loops) {
      SmallVector<Accumulator> accumulators = accumulatorsOf(loop);
      if (accumulators.empty())
        continue;
      ++promoted;
      rewriter.setInsertionPoint(loop);
      SmallVector<Value> initial;
      for (Accumulator &acc : accumulators)
        initial.push_back(memref::LoadOp::create(rewriter, acc.load.getLoc(),
                                                 acc.load.getMemRef(), acc.load.getIndices()));
      FailureOr<LoopLikeOpInterface> replaced = loop.replaceWithAdditionalYields(
          rewriter, initial, /*replaceInitOperandUsesInLoop=*/false,
          [&](OpBuilder &, Location, ArrayRef<BlockArgument>) {
            SmallVector<Value> yields;
            for (Accumulator &acc : accumulators)
              yields.push_back(acc.store.getValueToStore());
            return yields;
          });
      if (failed(replaced))
        return signalPassFailure();
      auto newLoop = cast<scf::ForOp>(replaced->getOperation());
      unsigned first = newLoop.getNumResults() - accumulators.size();
      rewriter.setInsertionPointAfter(newLoop);
      for (auto [n, acc] : llvm::enumerate(accumulators)) {
        BlockArgument carried = newLoop.getRegionIterArgs()[first + n];
        rewriter.replaceAllUsesWith(acc.load.getResult(), carried);
        // A float sum may add in any order, so that LLVM vectorizes it
        // (in order, each add waits four cycles on the one before).
        if (auto add = acc.store.getValueToStore().getDefiningOp<arith::AddFOp>();
            add && add->getBlock() == newLoop.getBody() &&
            (add.getLhs() == carried || add.getRhs() == carried) &&
            llvm::all_of(add->getUsers(), [store = acc.store.getOperation()](Operation *user) {
              return user == store || isa<scf::YieldOp>(user);
            }))
          add.setFastmath(add.getFastmath() | arith::FastMathFlags::reassoc);
        memref::StoreOp::create(rewriter, acc.store.getLoc(), newLoop.getResult(first + n),
                                acc.store.getMemRef(), acc.store.getIndices());
        rewriter.eraseOp(acc.store);
        rewriter.eraseOp(acc.load);
      }
    }
  }
};

} // namespace
