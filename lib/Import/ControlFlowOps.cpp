//===- ControlFlowOps.cpp - ONNX's If, Loop and Scan ----------------------===//
//
// If becomes scf.if, Loop scf.while and Scan scf.for; their subgraphs are
// imported into the regions by the importer itself (NodeContext::subgraphs),
// reading the enclosing graphs' values directly, as ONNX scoping allows.
// A subgraph's output types are known only once it is imported, so each
// construct is first imported into a draft op that is then thrown away: the
// final op gets types that every branch or iteration fits (a dimension that
// differs becomes dynamic), and the subgraph is imported again into it.
//
//===----------------------------------------------------------------------===//

#include "ImporterInternal.h"

#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace hasten;
using namespace hasten::onnx_import;

namespace {

/// The graph attribute `name`, or null.
const onnx::GraphProto *graphAttr(NodeContext &ctx, StringRef name) {
  const onnx::AttributeProto *attr = ctx.attr(name);
  return attr && attr->has_g() ? &attr->g() : nullptr;
}

/// The only element of a one-element tensor of `element` type.
FailureOr<Value> scalarOf(NodeContext &ctx, Value tensor, StringRef what, Type element) {
  auto type = cast<RankedTensorType>(tensor.getType());
  if (!type.hasStaticShape() || type.getNumElements() != 1 || type.getElementType() != element)
    return ctx.emitError() << what << " must be one " << element << " value, got " << type;
  SmallVector<Value> zeros(type.getRank(), indexConstant(ctx.b, ctx.loc, 0));
  return Value(tensor::ExtractOp::create(ctx.b, ctx.loc, tensor, zeros));
}

/// A rank-0 tensor holding `scalar`.
Value scalarTensor(OpBuilder &b, Location loc, Value scalar) {
  return tensor::FromElementsOp::create(b, loc, RankedTensorType::get({}, scalar.getType()),
                                        ValueRange{scalar});
}

/// The type both `a` and `b` fit: equal dimensions kept, others dynamic.
/// Fails when the element types or ranks differ.
FailureOr<RankedTensorType> join(Type a, Type b) {
  auto ta = cast<RankedTensorType>(a), tb = cast<RankedTensorType>(b);
  if (ta.getElementType() != tb.getElementType() || ta.getRank() != tb.getRank())
    return failure();
  SmallVector<int64_t> shape;
  for (auto [x, y] : llvm::zip(ta.getShape(), tb.getShape()))
    shape.push_back(x == y ? x : ShapedType::kDynamic);
  return RankedTensorType::get(shape, ta.getElementType());
}

/// Imports `graph` at the builder's insertion point with its inputs bound to
/// `inputs` (in order) in a copy of the node's scope.
FailureOr<SmallVector<ImportedValue>> importGraph(NodeContext &ctx, OpBuilder &b,
                                                  const onnx::GraphProto &graph,
                                                  ArrayRef<ImportedValue> inputs) {
  if (graph.input_size() != (int)inputs.size()) {
    ctx.emitError() << "subgraph '" << graph.name() << "' has " << graph.input_size()
                    << " inputs where " << inputs.size() << " are bound";
    return failure();
  }
  ValueTable scope = ctx.scope();
  for (auto [info, value] : llvm::zip(graph.input(), inputs))
    scope[info.name()] = value;
  return (*ctx.subgraphs)(graph, scope, b);
}

/// A throwaway region to import a subgraph into when only its output types
/// are wanted: an scf.if on `true` without results, erased by the caller.
scf::IfOp draftRegion(OpBuilder &b, Location loc) {
  Value yes = arith::ConstantIntOp::create(b, loc, b.getI1Type(), 1);
  return scf::IfOp::create(b, loc, TypeRange{}, yes, /*withElseRegion=*/false);
}

/// A rank-0 i1 tensor holding `value`.
Value flagTensor(OpBuilder &b, Location loc, bool value) {
  return arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(RankedTensorType::get({}, b.getI1Type()), value));
}

/// The kind a value must have to hold values of kinds `a` and `b`, with the
/// metadata both allow: an optional where either is one, the element rank
/// both sequences' elements have. Fails naming `what` when one is a
/// sequence, or strings, and the other not.
FailureOr<ValueKind> joinKinds(NodeContext &ctx, const ValueKind &a, const ValueKind &b,
                               const std::string &what, StringRef whereA, StringRef whereB) {
  if (a.sequence != b.sequence) {
    ctx.emitError() << what << " is a " << (a.sequence ? "sequence" : "tensor") << " " << whereA
                    << " but a " << (b.sequence ? "sequence" : "tensor") << " " << whereB;
    return failure();
  }
  if (a.strings != b.strings) {
    ctx.emitError() << what << " is " << (a.strings ? "strings" : "numbers") << " " << whereA
                    << " but " << (b.strings ? "strings" : "numbers") << " " << whereB;
    return failure();
  }
  ValueKind kind = a;
  kind.isUnsigned = a.isUnsigned || b.isUnsigned;
  kind.optional = a.optional || b.optional;
  if (a.sequence)
    kind.elementRank = joinElementRanks(a.elementRank, b.elementRank);
  return kind;
}

/// `value` as a value of `kind`: wrapped in a present optional where `kind`
/// is an optional and it is not.
ImportedValue matchKind(OpBuilder &b, Location loc, const ImportedValue &value,
                        const ValueKind &kind) {
  ImportedValue matched = value;
  if (kind.optional && !value.isOptional())
    matched.present = flagTensor(b, loc, true);
  return matched;
}

//===----------------------------------------------------------------------===//
// If
//===----------------------------------------------------------------------===//

/// If: scf.if whose regions hold the two branches; each result takes the
/// type both branches' values fit.
LogicalResult convertIf(NodeContext &ctx) {
  const onnx::GraphProto *thenGraph = graphAttr(ctx, "then_branch");
  const onnx::GraphProto *elseGraph = graphAttr(ctx, "else_branch");
  if (!thenGraph || !elseGraph)
    return ctx.fail("needs the then_branch and else_branch graphs");
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  FailureOr<Value> cond = scalarOf(ctx, ctx.input(0), "the condition", b.getI1Type());
  if (failed(cond))
    return failure();
  auto draft = scf::IfOp::create(b, loc, TypeRange{}, *cond, /*withElseRegion=*/true);
  auto branch = [&](Region &region, const onnx::GraphProto &graph) {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(region.front().getTerminator());
    return importGraph(ctx, b, graph, {});
  };
  FailureOr<SmallVector<ImportedValue>> thenOut = branch(draft.getThenRegion(), *thenGraph);
  FailureOr<SmallVector<ImportedValue>> elseOut =
      succeeded(thenOut) ? branch(draft.getElseRegion(), *elseGraph)
                         : FailureOr<SmallVector<ImportedValue>>(failure());
  if (failed(thenOut) || failed(elseOut)) {
    draft.erase();
    return failure();
  }
  if (thenOut->size() != elseOut->size() || (int)thenOut->size() != ctx.node.output_size()) {
    draft.erase();
    return ctx.emitError() << "the branches have " << thenOut->size() << " and " << elseOut->size()
                           << " outputs for the node's " << ctx.node.output_size();
  }
  // Each output's parts (a sequence or an optional has several) take the
  // types both branches' parts fit.
  SmallVector<Type> types;
  SmallVector<ValueKind> likes;
  for (auto [i, pair] : llvm::enumerate(llvm::zip(*thenOut, *elseOut))) {
    auto &[t, e] = pair;
    FailureOr<ValueKind> like = joinKinds(ctx, kindOf(t), kindOf(e), "output " + std::to_string(i),
                                          "in then_branch", "in else_branch");
    if (failed(like)) {
      draft.erase();
      return failure();
    }
    // Types outlive the draft's values (erased on failure); read them first.
    SmallVector<Value> thenParts = flattenValue(t), elseParts = flattenValue(e);
    for (auto [tp, ep] : llvm::zip(thenParts, elseParts)) {
      Type thenType = tp.getType(), elseType = ep.getType();
      FailureOr<RankedTensorType> type = join(thenType, elseType);
      if (failed(type)) {
        draft.erase();
        return ctx.emitError() << "output " << i << " is " << thenType << " in then_branch but "
                               << elseType << " in else_branch";
      }
      types.push_back(*type);
    }
    likes.push_back(*like);
  }
  auto result = scf::IfOp::create(b, loc, types, *cond, /*withElseRegion=*/true);
  for (auto [region, from, outs] : {std::tuple<Region *, Region *, SmallVector<ImportedValue> *>{
                                        &result.getThenRegion(), &draft.getThenRegion(), &*thenOut},
                                    {&result.getElseRegion(), &draft.getElseRegion(), &*elseOut}}) {
    region->takeBody(*from);
    Block &block = region->front();
    block.getTerminator()->erase();
    OpBuilder yb = OpBuilder::atBlockEnd(&block);
    SmallVector<Value> yielded;
    for (auto [out, like] : llvm::zip(*outs, likes))
      for (Value part : flattenValue(matchKind(yb, loc, out, like)))
        yielded.push_back(castIfNeeded(yb, loc, part, types[yielded.size()]));
    scf::YieldOp::create(yb, loc, yielded);
  }
  draft.erase();
  unsigned next = 0;
  for (auto [i, like] : llvm::enumerate(likes)) {
    unsigned count = numParts(like);
    ctx.setOutputValue(i, rebuildValue(like, result.getResults().slice(next, count)));
    next += count;
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Loop
//===----------------------------------------------------------------------===//

/// `acc` ([n, S...]) with `item` ([S...]) appended: [n + 1, S...].
Value append(OpBuilder &b, Location loc, Value acc, Value item) {
  auto itemType = cast<RankedTensorType>(item.getType());
  int64_t rank = itemType.getRank();
  Value n = tensor::DimOp::create(b, loc, acc, 0);
  Value grownSize = arith::AddIOp::create(b, loc, n, indexConstant(b, loc, 1));
  SmallVector<OpFoldResult> sizes = {grownSize};
  for (int64_t d = 0; d < rank; ++d)
    sizes.push_back(b.getIndexAttr(itemType.getDimSize(d)));
  Value grown = createEmpty(b, loc, sizes, itemType.getElementType());
  SmallVector<OpFoldResult> zeros(rank + 1, b.getIndexAttr(0)), ones(rank + 1, b.getIndexAttr(1));
  SmallVector<OpFoldResult> accSizes = sizes;
  accSizes[0] = n;
  grown = tensor::InsertSliceOp::create(b, loc, acc, grown, zeros, accSizes, ones);
  SmallVector<OpFoldResult> at = zeros, one = sizes;
  at[0] = n;
  one[0] = b.getIndexAttr(1);
  return tensor::InsertSliceOp::create(b, loc, item, grown, at, one, ones);
}

/// Loop: scf.while carrying (iteration, condition, the loop-carried values,
/// the scan outputs so far). The trip count and the condition are both
/// optional; each iteration's scan outputs are stacked along a new first
/// dimension of run-time size.
LogicalResult convertLoop(NodeContext &ctx) {
  const onnx::GraphProto *body = graphAttr(ctx, "body");
  if (!body)
    return ctx.fail("needs the body graph");
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Type i64 = b.getI64Type(), i1 = b.getI1Type();
  int64_t carried = ctx.node.input_size() - 2;
  int64_t scans = body->output_size() - 1 - carried;
  if (carried < 0 || body->input_size() != 2 + carried || scans < 0 ||
      ctx.node.output_size() > carried + scans)
    return ctx.emitError() << "the body must take the iteration, the condition and the " << carried
                           << " loop-carried values and return the condition, "
                           << "those values and any scan outputs; it takes " << body->input_size()
                           << " and returns " << body->output_size();
  std::optional<Value> tripCount;
  if (ctx.hasInput(0)) {
    FailureOr<Value> m = scalarOf(ctx, ctx.input(0), "the trip count M", i64);
    if (failed(m))
      return failure();
    tripCount = *m;
  }
  Value go = arith::ConstantIntOp::create(b, loc, i1, 1);
  if (ctx.hasInput(1)) {
    FailureOr<Value> c = scalarOf(ctx, ctx.input(1), "the condition", i1);
    if (failed(c))
      return failure();
    go = *c;
  }
  SmallVector<ImportedValue> initial;
  for (int64_t j = 0; j < carried; ++j) {
    if (!ctx.hasInput(2 + j))
      return ctx.fail("loop-carried value " + std::to_string(j) + " is missing");
    initial.push_back(ctx.info(2 + j));
  }
  // The carried values' kinds: the initial values' until the draft shows
  // what the body returns (an optional, another element rank).
  SmallVector<ValueKind> likes;
  for (const ImportedValue &value : initial)
    likes.push_back(kindOf(value));
  auto bodyInputs = [&](OpBuilder &bb, Value iteration, Value cond, ValueRange parts) {
    SmallVector<ImportedValue> inputs;
    inputs.push_back({scalarTensor(bb, loc, iteration), false, SmallVector<Value>{iteration}});
    inputs.push_back({scalarTensor(bb, loc, cond), false, std::nullopt});
    unsigned next = 0;
    for (const ValueKind &like : likes) {
      unsigned count = numParts(like);
      inputs.push_back(rebuildValue(like, parts.slice(next, count)));
      next += count;
    }
    return inputs;
  };
  auto carriedParts = [&](OpBuilder &bb, ArrayRef<ImportedValue> values) {
    SmallVector<Value> parts;
    for (auto [value, like] : llvm::zip(values, likes))
      llvm::append_range(parts, flattenValue(matchKind(bb, loc, value, like)));
    return parts;
  };

  // Draft: the body's output types for the initial values' types.
  SmallVector<Type> carriedTypes;
  SmallVector<RankedTensorType> scanTypes;
  {
    scf::IfOp draft = draftRegion(b, loc);
    OpBuilder db = OpBuilder::atBlockBegin(&draft.getThenRegion().front());
    FailureOr<SmallVector<ImportedValue>> outs =
        importGraph(ctx, db, *body,
                    bodyInputs(db, arith::ConstantIntOp::create(db, loc, i64, 0), go,
                               carriedParts(db, initial)));
    if (failed(outs)) {
      draft.erase();
      return failure();
    }
    SmallVector<ValueKind> joined;
    for (int64_t j = 0; j < carried; ++j) {
      FailureOr<ValueKind> like = joinKinds(ctx, likes[j], kindOf((*outs)[1 + j]),
                                            "loop-carried value " + std::to_string(j), "on entry",
                                            "where the body returns it");
      if (failed(like)) {
        draft.erase();
        return failure();
      }
      joined.push_back(*like);
    }
    likes = joined;
    for (int64_t j = 0; j < carried; ++j) {
      SmallVector<Value> in = flattenValue(matchKind(db, loc, initial[j], likes[j]));
      SmallVector<Value> out = flattenValue(matchKind(db, loc, (*outs)[1 + j], likes[j]));
      for (auto [enters, returned] : llvm::zip(in, out)) {
        FailureOr<RankedTensorType> type = join(enters.getType(), returned.getType());
        if (failed(type)) {
          Type entersType = enters.getType(), returnedType = returned.getType();
          draft.erase();
          return ctx.emitError() << "loop-carried value " << j << " enters as " << entersType
                                 << " but the body returns " << returnedType;
        }
        carriedTypes.push_back(*type);
      }
    }
    for (int64_t k = 0; k < scans; ++k) {
      const ImportedValue &scan = (*outs)[1 + carried + k];
      if (scan.isSequence() || scan.isOptional() || scan.isString()) {
        draft.erase();
        return ctx.emitError() << "scan output " << k << " must be a tensor of numbers";
      }
      auto type = cast<RankedTensorType>(scan.tensor.getType());
      if (!type.hasStaticShape()) {
        draft.erase();
        return ctx.emitError() << "scan output " << k << " must have a static shape, got " << type;
      }
      scanTypes.push_back(type);
    }
    draft.erase();
  }
  int64_t carriedCount = carriedTypes.size();

  SmallVector<Value> inits = {arith::ConstantIntOp::create(b, loc, i64, 0), go};
  SmallVector<Type> types = {i64, i1};
  for (auto [part, type] : llvm::zip(carriedParts(b, initial), carriedTypes)) {
    inits.push_back(castIfNeeded(b, loc, part, type));
    types.push_back(type);
  }
  for (RankedTensorType type : scanTypes) {
    SmallVector<OpFoldResult> sizes = {b.getIndexAttr(0)};
    for (int64_t d : type.getShape())
      sizes.push_back(b.getIndexAttr(d));
    SmallVector<int64_t> stacked = {ShapedType::kDynamic};
    stacked.append(type.getShape().begin(), type.getShape().end());
    auto stackedType = RankedTensorType::get(stacked, type.getElementType());
    inits.push_back(
        castIfNeeded(b, loc, createEmpty(b, loc, sizes, type.getElementType()), stackedType));
    types.push_back(stackedType);
  }
  LogicalResult bodyResult = success();
  auto loop = scf::WhileOp::create(
      b, loc, types, inits,
      [&](OpBuilder &cb, Location cl, ValueRange args) {
        Value keep = args[1];
        if (tripCount)
          keep = arith::AndIOp::create(
              cb, cl, keep,
              arith::CmpIOp::create(cb, cl, arith::CmpIPredicate::slt, args[0], *tripCount));
        scf::ConditionOp::create(cb, cl, keep, args);
      },
      [&](OpBuilder &ab, Location al, ValueRange args) {
        FailureOr<SmallVector<ImportedValue>> outs = importGraph(
            ctx, ab, *body, bodyInputs(ab, args[0], args[1], args.slice(2, carriedCount)));
        SmallVector<Value> next = {
            arith::AddIOp::create(ab, al, args[0], arith::ConstantIntOp::create(ab, al, i64, 1))};
        if (failed(outs)) {
          bodyResult = failure();
          next.append(args.drop_front(1).begin(), args.drop_front(1).end());
          scf::YieldOp::create(ab, al, next);
          return;
        }
        OpBuilder::InsertionGuard guard(ctx.b);
        ctx.b.setInsertionPoint(ab.getInsertionBlock(), ab.getInsertionPoint());
        FailureOr<Value> cond = scalarOf(ctx, (*outs)[0].tensor, "the body's condition", i1);
        next.push_back(succeeded(cond) ? *cond : args[1]);
        if (failed(cond))
          bodyResult = failure();
        SmallVector<ImportedValue> returned((*outs).begin() + 1, (*outs).begin() + 1 + carried);
        for (auto [part, type] : llvm::zip(carriedParts(ab, returned), carriedTypes))
          next.push_back(castIfNeeded(ab, al, part, type));
        for (int64_t k = 0; k < scans; ++k)
          next.push_back(
              append(ab, al, args[2 + carriedCount + k],
                     castIfNeeded(ab, al, (*outs)[1 + carried + k].tensor, scanTypes[k])));
        scf::YieldOp::create(ab, al, next);
      });
  if (failed(bodyResult)) {
    loop.erase();
    return failure();
  }
  unsigned nextResult = 2;
  for (int64_t j = 0; j < carried; ++j) {
    unsigned count = numParts(likes[j]);
    ctx.setOutputValue(j, rebuildValue(likes[j], loop.getResults().slice(nextResult, count)));
    nextResult += count;
  }
  for (int64_t k = 0; k < scans; ++k)
    if (carried + k < ctx.node.output_size())
      ctx.setOutput(carried + k, loop.getResult(nextResult + k));
  return success();
}

//===----------------------------------------------------------------------===//
// Scan
//===----------------------------------------------------------------------===//

/// Scan (opset 9 and later): scf.for over the scan inputs' axis carrying
/// the state values and the scan output buffers; each iteration reads one
/// slice of every scan input (from the end for direction 1) and writes its
/// scan outputs at that position along their axes.
LogicalResult convertScan(NodeContext &ctx) {
  const onnx::GraphProto *body = graphAttr(ctx, "body");
  if (!body)
    return ctx.fail("needs the body graph");
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  int64_t scanInputs = ctx.getInt("num_scan_inputs", 0);
  int64_t states = ctx.node.input_size() - scanInputs;
  int64_t scanOutputs = ctx.node.output_size() - states;
  if (scanInputs < 1 || states < 0 || scanOutputs < 0 ||
      body->input_size() != states + scanInputs || body->output_size() != states + scanOutputs)
    return ctx.emitError() << "num_scan_inputs " << scanInputs << " does not fit "
                           << ctx.node.input_size() << " inputs, " << ctx.node.output_size()
                           << " outputs and a body of " << body->input_size() << " inputs and "
                           << body->output_size() << " outputs";
  auto listOr = [&](StringRef name, int64_t count) -> FailureOr<SmallVector<int64_t>> {
    SmallVector<int64_t> values = ctx.getInts(name).value_or(SmallVector<int64_t>(count, 0));
    if ((int64_t)values.size() != count) {
      ctx.emitError() << name << " must have " << count << " entries, got " << values.size();
      return failure();
    }
    return values;
  };
  FailureOr<SmallVector<int64_t>> inAxes = listOr("scan_input_axes", scanInputs);
  FailureOr<SmallVector<int64_t>> inDirections = listOr("scan_input_directions", scanInputs);
  FailureOr<SmallVector<int64_t>> outAxes = listOr("scan_output_axes", scanOutputs);
  FailureOr<SmallVector<int64_t>> outDirections = listOr("scan_output_directions", scanOutputs);
  if (failed(inAxes) || failed(inDirections) || failed(outAxes) || failed(outDirections))
    return failure();
  // The sequence length: every scan input's size along its axis.
  int64_t length = -1;
  for (int64_t j = 0; j < scanInputs; ++j) {
    auto type = ctx.inputType(states + j);
    FailureOr<int64_t> axis = ctx.normalizeAxis((*inAxes)[j], type.getRank(), "scan_input_axes");
    if (failed(axis))
      return failure();
    (*inAxes)[j] = *axis;
    int64_t size = type.getDimSize(*axis);
    if (ShapedType::isDynamic(size) || (length >= 0 && size != length))
      return ctx.emitError() << "scan inputs need one static length along their axes, got " << type
                             << " along axis " << *axis;
    length = size;
  }
  auto sliceAt = [&](OpBuilder &sb, Value input, int64_t axis, Value position) -> Value {
    auto type = cast<RankedTensorType>(input.getType());
    SmallVector<OpFoldResult> offsets(type.getRank(), sb.getIndexAttr(0)), sizes, strides;
    for (int64_t d = 0; d < type.getRank(); ++d) {
      sizes.push_back(d == axis ? sb.getIndexAttr(1) : sb.getIndexAttr(type.getDimSize(d)));
      strides.push_back(sb.getIndexAttr(1));
    }
    offsets[axis] = position;
    SmallVector<int64_t> shape(type.getShape());
    shape.erase(shape.begin() + axis);
    return tensor::ExtractSliceOp::create(sb, loc,
                                          RankedTensorType::get(shape, type.getElementType()),
                                          input, offsets, sizes, strides);
  };
  auto positionOf = [&](OpBuilder &pb, Value t, bool reverse) -> Value {
    return reverse ? Value(arith::SubIOp::create(pb, loc, indexConstant(pb, loc, length - 1), t))
                   : t;
  };
  auto bodyInputs = [&](OpBuilder &bb, ValueRange stateValues, Value t) {
    SmallVector<ImportedValue> inputs;
    for (int64_t j = 0; j < states; ++j)
      inputs.push_back({stateValues[j], ctx.info(j).isUnsigned, std::nullopt});
    for (int64_t j = 0; j < scanInputs; ++j)
      inputs.push_back({sliceAt(bb, ctx.input(states + j), (*inAxes)[j],
                                positionOf(bb, t, (*inDirections)[j] != 0)),
                        ctx.info(states + j).isUnsigned, std::nullopt});
    return inputs;
  };
  SmallVector<Value> initialStates;
  for (int64_t j = 0; j < states; ++j)
    initialStates.push_back(ctx.input(j));

  // Draft: the body's output types.
  SmallVector<Type> stateTypes;
  SmallVector<RankedTensorType> outTypes;
  {
    scf::IfOp draft = draftRegion(b, loc);
    OpBuilder db = OpBuilder::atBlockBegin(&draft.getThenRegion().front());
    FailureOr<SmallVector<ImportedValue>> outs =
        importGraph(ctx, db, *body, bodyInputs(db, initialStates, indexConstant(db, loc, 0)));
    if (failed(outs)) {
      draft.erase();
      return failure();
    }
    for (auto [i, out] : llvm::enumerate(*outs))
      if (out.isSequence() || out.isOptional() || out.isString()) {
        draft.erase();
        return ctx.emitError() << "body output " << i << " must be a tensor of numbers";
      }
    for (int64_t j = 0; j < states; ++j) {
      Type returned = (*outs)[j].tensor.getType();
      FailureOr<RankedTensorType> type = join(initialStates[j].getType(), returned);
      if (failed(type)) {
        draft.erase();
        return ctx.emitError() << "state " << j << " enters as " << initialStates[j].getType()
                               << " but the body returns " << returned;
      }
      stateTypes.push_back(*type);
    }
    for (int64_t k = 0; k < scanOutputs; ++k) {
      auto type = cast<RankedTensorType>((*outs)[states + k].tensor.getType());
      if (!type.hasStaticShape()) {
        draft.erase();
        return ctx.emitError() << "scan output " << k << " must have a static shape, got " << type;
      }
      FailureOr<int64_t> axis =
          ctx.normalizeAxis((*outAxes)[k], type.getRank() + 1, "scan_output_axes");
      if (failed(axis)) {
        draft.erase();
        return failure();
      }
      (*outAxes)[k] = *axis;
      outTypes.push_back(type);
    }
    draft.erase();
  }

  SmallVector<Value> inits;
  for (auto [v, type] : llvm::zip(initialStates, stateTypes))
    inits.push_back(castIfNeeded(b, loc, v, type));
  for (auto [type, axis] : llvm::zip(outTypes, *outAxes)) {
    SmallVector<int64_t> shape(type.getShape());
    shape.insert(shape.begin() + axis, length);
    inits.push_back(tensor::EmptyOp::create(b, loc, shape, type.getElementType()));
  }
  LogicalResult bodyResult = success();
  auto loop = scf::ForOp::create(
      b, loc, indexConstant(b, loc, 0), indexConstant(b, loc, length), indexConstant(b, loc, 1),
      inits, [&](OpBuilder &lb, Location ll, Value t, ValueRange iter) {
        FailureOr<SmallVector<ImportedValue>> outs =
            importGraph(ctx, lb, *body, bodyInputs(lb, iter.take_front(states), t));
        if (failed(outs)) {
          bodyResult = failure();
          scf::YieldOp::create(lb, ll, iter);
          return;
        }
        SmallVector<Value> next;
        for (int64_t j = 0; j < states; ++j)
          next.push_back(castIfNeeded(lb, ll, (*outs)[j].tensor, stateTypes[j]));
        for (int64_t k = 0; k < scanOutputs; ++k) {
          RankedTensorType type = outTypes[k];
          int64_t axis = (*outAxes)[k], rank = type.getRank() + 1;
          SmallVector<OpFoldResult> offsets(rank, lb.getIndexAttr(0)), sizes, strides;
          for (int64_t d = 0, s = 0; d < rank; ++d) {
            sizes.push_back(d == axis ? lb.getIndexAttr(1) : lb.getIndexAttr(type.getDimSize(s++)));
            strides.push_back(lb.getIndexAttr(1));
          }
          offsets[axis] = positionOf(lb, t, (*outDirections)[k] != 0);
          next.push_back(tensor::InsertSliceOp::create(
              lb, ll, castIfNeeded(lb, ll, (*outs)[states + k].tensor, type), iter[states + k],
              offsets, sizes, strides));
        }
        scf::YieldOp::create(lb, ll, next);
      });
  if (failed(bodyResult)) {
    loop.erase();
    return failure();
  }
  for (int64_t o = 0; o < ctx.node.output_size(); ++o)
    if (ctx.wantsOutput(o))
      ctx.setOutput(o, loop.getResult(o), o < states ? ctx.info(o).isUnsigned : false);
  return success();
}

//===----------------------------------------------------------------------===//
// SequenceMap
//===----------------------------------------------------------------------===//

/// SequenceMap: scf.for over the first sequence's elements; the body sees
/// element i of every sequence input and the tensor inputs whole, and each
/// of its outputs is appended to one output sequence.
LogicalResult convertSequenceMap(NodeContext &ctx) {
  const onnx::GraphProto *body = graphAttr(ctx, "body");
  if (!body)
    return ctx.fail("needs the body graph");
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  int64_t inputs = ctx.node.input_size();
  if (body->input_size() != inputs || body->output_size() != ctx.node.output_size())
    return ctx.emitError() << "the body takes " << body->input_size() << " inputs and returns "
                           << body->output_size() << " outputs for the node's " << inputs << " and "
                           << ctx.node.output_size();
  if (!ctx.hasInput(0) || !ctx.info(0).isSequence() || ctx.info(0).isOptional())
    return ctx.fail("input #0 must be a sequence of tensors");
  // The rank each sequence input's elements are read at.
  SmallVector<int64_t> ranks;
  for (int64_t k = 0; k < inputs; ++k) {
    const ImportedValue &in = ctx.info(k);
    if (in.isOptional())
      return ctx.fail("input #" + std::to_string(k) +
                      " is an optional; SequenceMap takes "
                      "sequences and tensors");
    int64_t rank = in.isSequence() ? in.elementRank : kUnknownRank;
    const onnx::TypeProto &declared = body->input(k).type();
    if (in.isSequence() && rank < 0 && declared.has_tensor_type() &&
        declared.tensor_type().has_shape())
      rank = declared.tensor_type().shape().dim_size();
    if (in.isSequence() && rank < 0)
      return ctx.fail("the rank of input #" + std::to_string(k) +
                      "'s elements is not known when importing, and the body declares no shape "
                      "for them");
    ranks.push_back(rank);
  }
  auto bodyInputs = [&](OpBuilder &bb, Value i) {
    SmallVector<ImportedValue> values;
    for (int64_t k = 0; k < inputs; ++k) {
      const ImportedValue &in = ctx.info(k);
      if (!in.isSequence()) {
        values.push_back(in);
        continue;
      }
      values.push_back({sequenceElement(bb, loc, in, i, ranks[k]), in.isUnsigned, std::nullopt});
    }
    return values;
  };
  Value zero = indexConstant(b, loc, 0);

  // Draft: the outputs' element types and ranks (each output starts as an
  // empty sequence of them).
  struct OutputKind {
    Type element;
    bool isUnsigned;
    int64_t rank;
  };
  SmallVector<OutputKind> kinds;
  {
    scf::IfOp draft = draftRegion(b, loc);
    OpBuilder db = OpBuilder::atBlockBegin(&draft.getThenRegion().front());
    FailureOr<SmallVector<ImportedValue>> outs = importGraph(ctx, db, *body, bodyInputs(db, zero));
    if (failed(outs)) {
      draft.erase();
      return failure();
    }
    for (auto [j, out] : llvm::enumerate(*outs)) {
      if (out.isSequence() || out.isOptional() || out.isString()) {
        draft.erase();
        return ctx.emitError() << "body output " << j << " must be a tensor of numbers";
      }
      auto type = cast<ShapedType>(out.tensor.getType());
      kinds.push_back({type.getElementType(), out.isUnsigned, type.getRank()});
    }
    draft.erase();
  }
  SmallVector<ImportedValue> empties;
  for (const OutputKind &kind : kinds) {
    empties.push_back(emptySequence(b, loc, kind.element, kind.isUnsigned));
    empties.back().elementRank = kind.rank;
  }
  SmallVector<Value> inits;
  for (const ImportedValue &e : empties)
    llvm::append_range(inits, flattenValue(e));
  LogicalResult bodyResult = success();
  Value length = sequenceLength(b, loc, ctx.info(0));
  ValueRange results =
      countedLoop(b, loc, length, inits, [&](OpBuilder &lb, Location ll, Value i, ValueRange acc) {
        FailureOr<SmallVector<ImportedValue>> outs = importGraph(ctx, lb, *body, bodyInputs(lb, i));
        if (failed(outs)) {
          bodyResult = failure();
          return SmallVector<Value>(acc);
        }
        SmallVector<Value> next;
        for (auto [j, out] : llvm::enumerate(*outs)) {
          ImportedValue sequence = rebuildValue(empties[j], acc.slice(2 * j, 2));
          llvm::append_range(next, flattenValue(appendToSequence(lb, ll, sequence, out.tensor)));
        }
        return next;
      });
  if (failed(bodyResult)) {
    results.front().getDefiningOp()->erase();
    return failure();
  }
  for (auto [j, e] : llvm::enumerate(empties))
    ctx.setOutputValue(j, rebuildValue(e, results.slice(2 * j, 2)));
  return success();
}

} // namespace

void hasten::onnx_import::registerControlFlowConverters(ConverterTable &table) {
  table["If"] = convertIf;
  table["Loop"] = convertLoop;
  table["Scan"] = convertScan;
  table["SequenceMap"] = convertSequenceMap;
}
