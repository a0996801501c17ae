//===- MemoryPlan.cpp - activation memory plan of bufferized entries -------===//

#include "MemoryPlan.h"

#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/Passes/BufferPacking.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Matchers.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

#include <algorithm>

using namespace mlir;
using namespace hasten;

namespace {

/// Evaluates index arithmetic for one workload by folding it with the
/// workload's argument sizes substituted.
class SizeEvaluator {
public:
  SizeEvaluator(func::FuncOp func, const PlanWorkload &workload)
      : func(func), workload(workload) {}

  std::optional<int64_t> evaluate(Value value, int depth = 0) {
    if (depth > 64)
      return std::nullopt;
    auto cached = cache.find(value);
    if (cached != cache.end())
      return cached->second;
    std::optional<int64_t> result = compute(value, depth);
    cache[value] = result;
    return result;
  }

private:
  /// The hasten.role of a function argument; "none" for other arguments,
  /// "" for values that are not arguments.
  StringRef argRole(Value value) {
    auto arg = dyn_cast<BlockArgument>(value);
    if (!arg || arg.getOwner() != &func.getBody().front())
      return {};
    auto role = func.getArgAttrOfType<StringAttr>(arg.getArgNumber(),
                                                  HastenDialect::kRoleAttrName);
    return role ? role.getValue() : StringRef("none");
  }

  std::optional<int64_t> dimOf(Value source, int64_t dim, int depth) {
    auto type = cast<ShapedType>(source.getType());
    if (!type.isDynamicDim(dim))
      return type.getDimSize(dim);
    StringRef role = argRole(source);
    if (!role.empty())
      return role == "token_ids" ? workload.tokens : workload.otherDynamicDims;
    if (auto alloc = source.getDefiningOp<memref::AllocOp>())
      return evaluate(alloc.getDynamicSizes()[alloc.getType().getDynamicDimIndex(dim)], depth + 1);
    if (auto cast = source.getDefiningOp<memref::CastOp>())
      return dimOf(cast.getSource(), dim, depth + 1);
    auto fromFoldResult = [&](OpFoldResult size) -> std::optional<int64_t> {
      if (auto attr = dyn_cast<Attribute>(size))
        return cast<IntegerAttr>(attr).getInt();
      return evaluate(cast<Value>(size), depth + 1);
    };
    if (auto expand = source.getDefiningOp<memref::ExpandShapeOp>())
      return fromFoldResult(expand.getMixedOutputShape()[dim]);
    if (auto reinterpret = source.getDefiningOp<memref::ReinterpretCastOp>())
      return fromFoldResult(reinterpret.getMixedSizes()[dim]);
    if (auto subview = source.getDefiningOp<memref::SubViewOp>())
      if (subview.getType().getRank() == subview.getSourceType().getRank())
        return fromFoldResult(subview.getMixedSizes()[dim]);
    if (auto collapse = source.getDefiningOp<memref::CollapseShapeOp>()) {
      int64_t product = 1;
      // getReassociationIndices() returns a temporary: keep it alive while
      // one of its groups is iterated (ASan caught the dangling reference).
      SmallVector<ReassociationIndices> groups = collapse.getReassociationIndices();
      for (int64_t sourceDim : groups[dim]) {
        std::optional<int64_t> size = dimOf(collapse.getSrc(), sourceDim, depth + 1);
        if (!size)
          return std::nullopt;
        product *= *size;
      }
      return product;
    }
    return std::nullopt;
  }

  std::optional<int64_t> compute(Value value, int depth) {
    APInt constant;
    if (matchPattern(value, m_ConstantInt(&constant)))
      return constant.getSExtValue();
    Operation *op = value.getDefiningOp();
    if (!op)
      return std::nullopt;
    if (auto dim = dyn_cast<memref::DimOp>(op)) {
      std::optional<int64_t> index = dim.getConstantIndex();
      return index ? dimOf(dim.getSource(), *index, depth) : std::nullopt;
    }
    if (auto dim = dyn_cast<tensor::DimOp>(op)) {
      std::optional<int64_t> index = dim.getConstantIndex();
      return index ? dimOf(dim.getSource(), *index, depth) : std::nullopt;
    }
    if (auto load = dyn_cast<memref::LoadOp>(op))
      return argRole(load.getMemRef()) == "past_length" ? std::optional(workload.pastLength)
                                                        : std::nullopt;
    if (auto extract = dyn_cast<tensor::ExtractOp>(op))
      return argRole(extract.getTensor()) == "past_length"
                 ? std::optional(workload.pastLength)
                 : std::nullopt;
    if (op->getNumResults() != 1 || op->getNumRegions() != 0)
      return std::nullopt;
    SmallVector<Attribute> operands;
    for (Value operand : op->getOperands()) {
      std::optional<int64_t> v = evaluate(operand, depth + 1);
      if (!v)
        return std::nullopt;
      operands.push_back(IntegerAttr::get(operand.getType(), *v));
    }
    SmallVector<OpFoldResult> folded;
    if (failed(op->fold(operands, folded)) || folded.size() != 1)
      return std::nullopt;
    if (auto attr = dyn_cast<Attribute>(folded[0]))
      if (auto integer = dyn_cast<IntegerAttr>(attr))
        return integer.getValue().getSExtValue();
    if (auto forwarded = dyn_cast<Value>(folded[0]))
      return evaluate(forwarded, depth + 1);
    return std::nullopt;
  }

  func::FuncOp func;
  const PlanWorkload &workload;
  DenseMap<Value, std::optional<int64_t>> cache;
};

} // namespace

ActivationPlan hasten::planActivations(func::FuncOp func, const PlanWorkload &workload) {
  ActivationPlan plan;
  if (func.isExternal())
    return plan;
  Block &body = func.getBody().front();
  DenseMap<Operation *, int64_t> position;
  int64_t next = 0;
  for (Operation &op : body)
    position[&op] = next++;
  auto topLevel = [&](Operation *op) {
    while (op && op->getBlock() != &body)
      op = op->getParentOp();
    return op;
  };

  SizeEvaluator sizes(func, workload);
  std::vector<PackedBuffer> buffers;
  func.walk([&](memref::AllocOp alloc) {
    ++plan.buffers;
    MemRefType type = alloc.getType();
    int64_t elements = 1;
    for (int64_t d = 0; d < type.getRank(); ++d) {
      std::optional<int64_t> size = type.isDynamicDim(d)
                                        ? sizes.evaluate(
                                              alloc.getDynamicSizes()[type.getDynamicDimIndex(d)])
                                        : std::optional<int64_t>(type.getDimSize(d));
      if (!size) {
        ++plan.unknownSizes;
        return;
      }
      elements *= *size;
    }
    int64_t bytes = elements * std::max<int64_t>(1, type.getElementTypeBitWidth() / 8);
    // Live from the allocation to the last use of it or of any view of it.
    int64_t start = position[topLevel(alloc)], end = start;
    SmallVector<Value> worklist = {alloc.getResult()};
    while (!worklist.empty()) {
      Value v = worklist.pop_back_val();
      for (Operation *user : v.getUsers()) {
        if (isa<memref::DeallocOp>(user))
          continue;
        if (isa<func::ReturnOp>(user)) {
          end = next;
          continue;
        }
        if (Operation *top = topLevel(user))
          end = std::max(end, position[top]);
        if (isa<ViewLikeOpInterface, memref::CastOp>(user))
          for (Value result : user->getResults())
            worklist.push_back(result);
      }
    }
    buffers.push_back({bytes, start, end});
    plan.totalBytes += bytes;
  });

  // Peak live bytes, sweeping positions.
  std::vector<int64_t> delta(next + 2, 0);
  for (const PackedBuffer &b : buffers) {
    delta[b.start] += b.bytes;
    delta[b.end + 1] -= b.bytes;
  }
  int64_t live = 0;
  for (int64_t d : delta)
    plan.peakLiveBytes = std::max(plan.peakLiveBytes, live += d);

  // Offsets in one arena, as hasten-pack-static-buffers assigns them.
  plan.arenaBytes = packBuffers(buffers);
  return plan;
}
