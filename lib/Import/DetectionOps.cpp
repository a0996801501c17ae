//===- DetectionOps.cpp - ONNX's object-detection ops ---------------------===//
//
// NonMaxSuppression and RoiAlign, the two ops between a detector's heads and
// its boxes. Both are scalar loops over a few hundred boxes or samples, so
// they are imported as scf loops over tensor.extract/insert rather than as
// structured ops: what matters is that they follow ONNX Runtime's arithmetic
// (its box and sample formulas, step for step) and that NonMaxSuppression's
// output has the size the data gives it, known only when the model runs.
//
//===----------------------------------------------------------------------===//

#include "ImporterInternal.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace hasten;
using namespace hasten::onnx_import;

namespace {

Value f32Constant(OpBuilder &b, Location loc, float value) {
  return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(value));
}

/// The only element of a one-element input (shape [] or [1]).
FailureOr<Value> scalarInput(NodeContext &ctx, unsigned i, StringRef what) {
  auto type = ctx.inputType(i);
  if (!type.hasStaticShape() || type.getNumElements() != 1)
    return ctx.emitError() << what << " must hold one value, got " << type;
  SmallVector<Value> zeros(type.getRank(), indexConstant(ctx.b, ctx.loc, 0));
  return Value(tensor::ExtractOp::create(ctx.b, ctx.loc, ctx.input(i), zeros));
}

//===----------------------------------------------------------------------===//
// NonMaxSuppression
//===----------------------------------------------------------------------===//

/// A box as its corners, in either of ONNX's encodings.
struct Corners {
  Value xMin, yMin, xMax, yMax;
};

/// Box `box` of batch `batch`: [y1, x1, y2, x2] with the corners in either
/// order (center_point_box 0) or [x_center, y_center, width, height] (1).
Corners corners(OpBuilder &b, Location loc, Value boxes, Value batch, Value box, bool center) {
  Value v[4];
  for (int64_t k = 0; k < 4; ++k)
    v[k] =
        tensor::ExtractOp::create(b, loc, boxes, ValueRange{batch, box, indexConstant(b, loc, k)});
  if (center) {
    Value half = f32Constant(b, loc, 2.0f);
    Value halfWidth = arith::DivFOp::create(b, loc, v[2], half);
    Value halfHeight = arith::DivFOp::create(b, loc, v[3], half);
    return {arith::SubFOp::create(b, loc, v[0], halfWidth),
            arith::SubFOp::create(b, loc, v[1], halfHeight),
            arith::AddFOp::create(b, loc, v[0], halfWidth),
            arith::AddFOp::create(b, loc, v[1], halfHeight)};
  }
  return {
      arith::MinimumFOp::create(b, loc, v[1], v[3]), arith::MinimumFOp::create(b, loc, v[0], v[2]),
      arith::MaximumFOp::create(b, loc, v[1], v[3]), arith::MaximumFOp::create(b, loc, v[0], v[2])};
}

/// Whether boxes `p` and `q` overlap by more than `threshold` (intersection
/// over union, ONNX Runtime's formula: no overlap when the intersection or
/// either area is empty).
Value overlaps(OpBuilder &b, Location loc, const Corners &p, const Corners &q, Value threshold) {
  Value zero = f32Constant(b, loc, 0.0f);
  auto extent = [&](Value low0, Value low1, Value high0, Value high1) -> Value {
    Value low = arith::MaximumFOp::create(b, loc, low0, low1);
    Value high = arith::MinimumFOp::create(b, loc, high0, high1);
    return arith::MaximumFOp::create(b, loc, zero, arith::SubFOp::create(b, loc, high, low));
  };
  Value intersection = arith::MulFOp::create(b, loc, extent(p.xMin, q.xMin, p.xMax, q.xMax),
                                             extent(p.yMin, q.yMin, p.yMax, q.yMax));
  auto area = [&](const Corners &c) -> Value {
    return arith::MulFOp::create(b, loc, arith::SubFOp::create(b, loc, c.xMax, c.xMin),
                                 arith::SubFOp::create(b, loc, c.yMax, c.yMin));
  };
  Value areaP = area(p), areaQ = area(q);
  Value areaUnion =
      arith::SubFOp::create(b, loc, arith::AddFOp::create(b, loc, areaP, areaQ), intersection);
  auto positive = [&](Value x) -> Value {
    return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, x, zero);
  };
  Value valid = arith::AndIOp::create(
      b, loc, arith::AndIOp::create(b, loc, positive(intersection), positive(areaP)),
      arith::AndIOp::create(b, loc, positive(areaQ), positive(areaUnion)));
  Value ratio = arith::DivFOp::create(b, loc, intersection, areaUnion);
  return arith::AndIOp::create(
      b, loc, valid, arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, ratio, threshold));
}

/// NonMaxSuppression: per batch and class, greedily the best-scoring box
/// that no box selected before it overlaps by more than iou_threshold, among
/// those scoring above score_threshold, up to max_output_boxes_per_class;
/// rows (batch, class, box) in that order. Each round takes the best live
/// box (ties: the lower index, as a stable sort would) and retires it and
/// every box it overlaps, which selects what the sequential sweep over the
/// sorted boxes selects. The thresholds and the limit may be run-time
/// values; the output holds as many rows as were selected.
LogicalResult convertNonMaxSuppression(NodeContext &ctx) {
  auto boxesType = ctx.inputType(0), scoresType = ctx.inputType(1);
  if (!boxesType.hasStaticShape() || boxesType.getRank() != 3 || boxesType.getDimSize(2) != 4 ||
      !boxesType.getElementType().isF32() || !scoresType.hasStaticShape() ||
      scoresType.getRank() != 3 || !scoresType.getElementType().isF32() ||
      scoresType.getDimSize(0) != boxesType.getDimSize(0) ||
      scoresType.getDimSize(2) != boxesType.getDimSize(1))
    return ctx.emitError() << "expects static f32 boxes [batches, boxes, 4] and scores "
                              "[batches, classes, boxes], got "
                           << boxesType << " and " << scoresType;
  int64_t centerPointBox = ctx.getInt("center_point_box", 0);
  if (centerPointBox != 0 && centerPointBox != 1)
    return ctx.fail("center_point_box must be 0 or 1");
  bool center = centerPointBox == 1;
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  int64_t batches = boxesType.getDimSize(0), count = boxesType.getDimSize(1);
  int64_t classes = scoresType.getDimSize(1);
  Type i64 = b.getI64Type(), i1 = b.getI1Type();
  Value boxes = ctx.input(0), scores = ctx.input(1);

  // The per-class limit, clamped to [0, boxes]: more rounds select nothing.
  Value limit = indexConstant(b, loc, 0);
  if (ctx.hasInput(2)) {
    FailureOr<Value> given = scalarInput(ctx, 2, "max_output_boxes_per_class");
    if (failed(given))
      return failure();
    if (!given->getType().isInteger(64))
      return ctx.fail("max_output_boxes_per_class must be int64");
    Value clamped = arith::MinSIOp::create(
        b, loc,
        arith::MaxSIOp::create(b, loc, *given, arith::ConstantIntOp::create(b, loc, i64, 0)),
        arith::ConstantIntOp::create(b, loc, i64, count));
    limit = toIndex(b, loc, clamped);
  }
  Value iouThreshold = f32Constant(b, loc, 0.0f);
  if (ctx.hasInput(3)) {
    FailureOr<Value> given = scalarInput(ctx, 3, "iou_threshold");
    if (failed(given))
      return failure();
    if (!given->getType().isF32())
      return ctx.fail("iou_threshold must be float");
    iouThreshold = *given;
  }
  std::optional<Value> scoreThreshold;
  if (ctx.hasInput(4)) {
    FailureOr<Value> given = scalarInput(ctx, 4, "score_threshold");
    if (failed(given))
      return failure();
    if (!given->getType().isF32())
      return ctx.fail("score_threshold must be float");
    scoreThreshold = *given;
  }

  Value c0 = indexConstant(b, loc, 0), c1 = indexConstant(b, loc, 1);
  Value boxCount = indexConstant(b, loc, count);
  Value none = arith::ConstantIntOp::create(b, loc, i64, -1);
  auto rowsType = RankedTensorType::get({batches * classes * count, 3}, i64);
  Value rows = tensor::EmptyOp::create(b, loc, rowsType.getShape(), i64);
  auto aliveType = RankedTensorType::get({count}, i1);

  auto perClass = [&](OpBuilder &cb, Location cl, Value batch, Value cls, Value rowsIn,
                      Value selectedIn) -> std::pair<Value, Value> {
    auto scoreOf = [&](OpBuilder &sb, Location sl, Value box) -> Value {
      return tensor::ExtractOp::create(sb, sl, scores, ValueRange{batch, cls, box});
    };
    // Candidates: every box, or those scoring above the threshold.
    Value alive = tensor::EmptyOp::create(cb, cl, aliveType.getShape(), i1);
    alive =
        scf::ForOp::create(
            cb, cl, c0, boxCount, c1, ValueRange{alive},
            [&](OpBuilder &lb, Location ll, Value box, ValueRange iter) {
              Value candidate = arith::ConstantIntOp::create(lb, ll, i1, 1);
              if (scoreThreshold)
                candidate = arith::CmpFOp::create(lb, ll, arith::CmpFPredicate::OGT,
                                                  scoreOf(lb, ll, box), *scoreThreshold);
              scf::YieldOp::create(
                  lb, ll, ValueRange{tensor::InsertOp::create(lb, ll, candidate, iter[0], box)});
            })
            .getResult(0);
    Value falseValue = arith::ConstantIntOp::create(cb, cl, i1, 0);
    // Rounds: (live boxes, rows, rows written, done).
    auto rounds = scf::ForOp::create(
        cb, cl, c0, limit, c1, ValueRange{alive, rowsIn, selectedIn, falseValue},
        [&](OpBuilder &rb, Location rl, Value, ValueRange state) {
          auto round = scf::IfOp::create(
              rb, rl, state[3],
              [&](OpBuilder &db, Location dl) { scf::YieldOp::create(db, dl, state); },
              [&](OpBuilder &sb, Location sl) {
                // The best live box.
                Value zeroScore = f32Constant(sb, sl, 0.0f);
                auto best = scf::ForOp::create(
                    sb, sl, c0, boxCount, c1, ValueRange{none, zeroScore},
                    [&](OpBuilder &lb, Location ll, Value box, ValueRange iter) {
                      Value live = tensor::ExtractOp::create(lb, ll, state[0], box);
                      Value score = scoreOf(lb, ll, box);
                      Value first =
                          arith::CmpIOp::create(lb, ll, arith::CmpIPredicate::slt, iter[0],
                                                arith::ConstantIntOp::create(lb, ll, i64, 0));
                      Value higher =
                          arith::CmpFOp::create(lb, ll, arith::CmpFPredicate::OGT, score, iter[1]);
                      Value take = arith::AndIOp::create(
                          lb, ll, live, arith::OrIOp::create(lb, ll, first, higher));
                      scf::YieldOp::create(
                          lb, ll,
                          ValueRange{arith::SelectOp::create(lb, ll, take,
                                                             fromIndex(lb, ll, box, i64), iter[0]),
                                     arith::SelectOp::create(lb, ll, take, score, iter[1])});
                    });
                Value chosen = best.getResult(0);
                Value found = arith::CmpIOp::create(sb, sl, arith::CmpIPredicate::sge, chosen,
                                                    arith::ConstantIntOp::create(sb, sl, i64, 0));
                auto taken = scf::IfOp::create(
                    sb, sl, found,
                    [&](OpBuilder &tb, Location tl) {
                      Value chosenIndex = toIndex(tb, tl, chosen);
                      Value out = state[1];
                      Value fields[3] = {fromIndex(tb, tl, batch, i64), fromIndex(tb, tl, cls, i64),
                                         chosen};
                      for (int64_t k = 0; k < 3; ++k)
                        out = tensor::InsertOp::create(
                            tb, tl, fields[k], out, ValueRange{state[2], indexConstant(tb, tl, k)});
                      // Retire the chosen box and every live box it overlaps.
                      Corners kept = corners(tb, tl, boxes, batch, chosenIndex, center);
                      Value retired =
                          scf::ForOp::create(
                              tb, tl, c0, boxCount, c1, ValueRange{state[0]},
                              [&](OpBuilder &lb, Location ll, Value box, ValueRange iter) {
                                Value live = tensor::ExtractOp::create(lb, ll, iter[0], box);
                                Value same = arith::CmpIOp::create(lb, ll, arith::CmpIPredicate::eq,
                                                                   box, chosenIndex);
                                Value hidden = overlaps(lb, ll, kept,
                                                        corners(lb, ll, boxes, batch, box, center),
                                                        iouThreshold);
                                Value stays = arith::AndIOp::create(
                                    lb, ll, live,
                                    arith::XOrIOp::create(
                                        lb, ll, arith::OrIOp::create(lb, ll, same, hidden),
                                        arith::ConstantIntOp::create(lb, ll, i1, 1)));
                                scf::YieldOp::create(lb, ll,
                                                     ValueRange{tensor::InsertOp::create(
                                                         lb, ll, stays, iter[0], box)});
                              })
                              .getResult(0);
                      Value next = arith::AddIOp::create(tb, tl, state[2], c1);
                      scf::YieldOp::create(tb, tl, ValueRange{retired, out, next, state[3]});
                    },
                    [&](OpBuilder &eb, Location el) {
                      // Nothing live: the remaining rounds have nothing to do.
                      scf::YieldOp::create(eb, el,
                                           ValueRange{state[0], state[1], state[2],
                                                      arith::ConstantIntOp::create(eb, el, i1, 1)});
                    });
                scf::YieldOp::create(sb, sl, taken.getResults());
              });
          scf::YieldOp::create(rb, rl, round.getResults());
        });
    return {rounds.getResult(1), rounds.getResult(2)};
  };

  auto overBatches =
      scf::ForOp::create(b, loc, c0, indexConstant(b, loc, batches), c1, ValueRange{rows, c0},
                         [&](OpBuilder &bb, Location bl, Value batch, ValueRange bIter) {
                           auto overClasses = scf::ForOp::create(
                               bb, bl, c0, indexConstant(bb, bl, classes), c1, bIter,
                               [&](OpBuilder &cb, Location cl, Value cls, ValueRange cIter) {
                                 auto [out, selected] =
                                     perClass(cb, cl, batch, cls, cIter[0], cIter[1]);
                                 scf::YieldOp::create(cb, cl, ValueRange{out, selected});
                               });
                           scf::YieldOp::create(bb, bl, overClasses.getResults());
                         });
  SmallVector<OpFoldResult> offsets = {b.getIndexAttr(0), b.getIndexAttr(0)};
  SmallVector<OpFoldResult> sizes = {overBatches.getResult(1), b.getIndexAttr(3)};
  SmallVector<OpFoldResult> strides = {b.getIndexAttr(1), b.getIndexAttr(1)};
  Value selected =
      tensor::ExtractSliceOp::create(b, loc, overBatches.getResult(0), offsets, sizes, strides);
  ctx.setOutput(0, selected);
  return success();
}

//===----------------------------------------------------------------------===//
// RoiAlign
//===----------------------------------------------------------------------===//

/// RoiAlign: each region of interest (x1, y1, x2, y2, times spatial_scale)
/// split into output_height x output_width bins, each the average (or the
/// maximum) of a grid of bilinear samples: sampling_ratio per side, or
/// ceil(bin size) when it is 0. The sample positions, the clamping at the
/// borders and the max mode's weighted corners are ONNX Runtime's (which
/// ONNX's reference follows). A grid side is capped at 4096 samples, so
/// that a hostile region cannot make a bin take forever.
LogicalResult convertRoiAlign(NodeContext &ctx) {
  auto xType = ctx.inputType(0), roisType = ctx.inputType(1), indexType = ctx.inputType(2);
  if (xType.getRank() != 4 || !xType.hasStaticShape() || !xType.getElementType().isF32() ||
      roisType.getRank() != 2 || roisType.getDimSize(1) != 4 ||
      !roisType.getElementType().isF32() || indexType.getRank() != 1 ||
      !indexType.getElementType().isInteger(64))
    return ctx.emitError() << "expects a static f32 X [N, C, H, W], f32 rois [rois, 4] and int64 "
                              "batch_indices [rois], got "
                           << xType << ", " << roisType << " and " << indexType;
  if (!ShapedType::isDynamic(roisType.getDimSize(0)) &&
      !ShapedType::isDynamic(indexType.getDimSize(0)) &&
      roisType.getDimSize(0) != indexType.getDimSize(0))
    return ctx.emitError() << "has " << roisType.getDimSize(0) << " rois but "
                           << indexType.getDimSize(0) << " batch indices";
  std::string mode = ctx.getString("mode", "avg");
  if (mode != "avg" && mode != "max")
    return ctx.fail("mode must be 'avg' or 'max', got '" + mode + "'");
  // Opset 16 added the half-pixel offset and made it the default.
  std::string transform = ctx.getString("coordinate_transformation_mode",
                                        ctx.opset >= 16 ? "half_pixel" : "output_half_pixel");
  if (transform != "half_pixel" && transform != "output_half_pixel")
    return ctx.fail("coordinate_transformation_mode must be 'half_pixel' or 'output_half_pixel', "
                    "got '" +
                    transform + "'");
  bool halfPixel = transform == "half_pixel";
  int64_t outHeight = ctx.getInt("output_height", 1), outWidth = ctx.getInt("output_width", 1);
  int64_t samplingRatio = ctx.getInt("sampling_ratio", 0);
  float spatialScale = ctx.getFloat("spatial_scale", 1.0f);
  if (outHeight < 1 || outWidth < 1 || samplingRatio < 0)
    return ctx.fail("output_height and output_width must be positive and sampling_ratio not "
                    "negative");
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Type f32 = b.getF32Type(), i64 = b.getI64Type();
  int64_t batches = xType.getDimSize(0), height = xType.getDimSize(2), width = xType.getDimSize(3);
  Value x = ctx.input(0), rois = ctx.input(1), batchIndices = ctx.input(2);
  SmallVector<OpFoldResult> outSizes = {tensor::getMixedSize(b, loc, rois, 0),
                                        b.getIndexAttr(xType.getDimSize(1)),
                                        b.getIndexAttr(outHeight), b.getIndexAttr(outWidth)};
  Value init = createEmpty(b, loc, outSizes, f32);
  SmallVector<utils::IteratorType> iterators(4, utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{init.getType()}, ValueRange{}, ValueRange{init},
      ArrayRef<AffineMap>{b.getMultiDimIdentityMap(4)}, iterators,
      [&](OpBuilder &gb, Location gl, ValueRange) {
        Value roi = linalg::IndexOp::create(gb, gl, 0);
        Value channel = linalg::IndexOp::create(gb, gl, 1);
        Value binY = linalg::IndexOp::create(gb, gl, 2);
        Value binX = linalg::IndexOp::create(gb, gl, 3);
        auto constant = [&](float v) { return f32Constant(gb, gl, v); };
        // The batch, clamped into X (out of range reads nothing outside it).
        Value batchIndex = tensor::ExtractOp::create(gb, gl, batchIndices, ValueRange{roi});
        batchIndex = arith::MinSIOp::create(
            gb, gl,
            arith::MaxSIOp::create(gb, gl, batchIndex,
                                   arith::ConstantIntOp::create(gb, gl, i64, 0)),
            arith::ConstantIntOp::create(gb, gl, i64, batches - 1));
        Value batch = toIndex(gb, gl, batchIndex);
        Value scale = constant(spatialScale), offset = constant(halfPixel ? 0.5f : 0.0f);
        auto coordinate = [&](int64_t k) -> Value {
          Value v =
              tensor::ExtractOp::create(gb, gl, rois, ValueRange{roi, indexConstant(gb, gl, k)});
          return arith::SubFOp::create(gb, gl, arith::MulFOp::create(gb, gl, v, scale), offset);
        };
        Value startX = coordinate(0), startY = coordinate(1);
        Value roiWidth = arith::SubFOp::create(gb, gl, coordinate(2), startX);
        Value roiHeight = arith::SubFOp::create(gb, gl, coordinate(3), startY);
        if (!halfPixel) {
          roiWidth = arith::MaximumFOp::create(gb, gl, roiWidth, constant(1.0f));
          roiHeight = arith::MaximumFOp::create(gb, gl, roiHeight, constant(1.0f));
        }
        Value binHeight = arith::DivFOp::create(gb, gl, roiHeight, constant(float(outHeight)));
        Value binWidth = arith::DivFOp::create(gb, gl, roiWidth, constant(float(outWidth)));
        auto gridSide = [&](Value binSize) -> Value {
          if (samplingRatio > 0)
            return indexConstant(gb, gl, samplingRatio);
          // ceil(bin size), in [0, 4096] (NaN: 0).
          Value side = math::CeilOp::create(gb, gl, binSize);
          side = arith::MinimumFOp::create(
              gb, gl, arith::MaximumFOp::create(gb, gl, side, constant(0.0f)), constant(4096.0f));
          Value notNaN = arith::CmpFOp::create(gb, gl, arith::CmpFPredicate::ORD, side, side);
          side = arith::SelectOp::create(gb, gl, notNaN, side, constant(0.0f));
          return arith::IndexCastOp::create(gb, gl, gb.getIndexType(),
                                            arith::FPToSIOp::create(gb, gl, i64, side));
        };
        Value gridY = gridSide(binHeight), gridX = gridSide(binWidth);
        Value samples = arith::MaxSIOp::create(gb, gl, arith::MulIOp::create(gb, gl, gridY, gridX),
                                               indexConstant(gb, gl, 1));
        auto toFloat = [&](Value index) -> Value {
          return arith::SIToFPOp::create(gb, gl, f32, fromIndex(gb, gl, index, i64));
        };
        Value gridYf = toFloat(gridY), gridXf = toFloat(gridX);
        // The first sample of this bin: start + bin * bin size.
        Value baseY = arith::AddFOp::create(
            gb, gl, startY, arith::MulFOp::create(gb, gl, toFloat(binY), binHeight));
        Value baseX = arith::AddFOp::create(gb, gl, startX,
                                            arith::MulFOp::create(gb, gl, toFloat(binX), binWidth));
        Value c0 = indexConstant(gb, gl, 0), c1 = indexConstant(gb, gl, 1);
        bool max = mode == "max";
        Value first = arith::ConstantIntOp::create(gb, gl, gb.getI1Type(), 1);
        auto rows = scf::ForOp::create(
            gb, gl, c0, gridY, c1, ValueRange{constant(0.0f), first},
            [&](OpBuilder &yb, Location yl, Value iy, ValueRange yIter) {
              auto columns = scf::ForOp::create(
                  yb, yl, c0, gridX, c1, yIter,
                  [&](OpBuilder &sb, Location sl, Value ix, ValueRange iter) {
                    auto fc = [&](float v) { return f32Constant(sb, sl, v); };
                    auto samplePosition = [&](Value base, Value i, Value binSize, Value grid) {
                      // base + (i + 0.5) * bin size / grid
                      Value step = arith::MulFOp::create(
                          sb, sl,
                          arith::AddFOp::create(
                              sb, sl,
                              arith::SIToFPOp::create(sb, sl, f32, fromIndex(sb, sl, i, i64)),
                              fc(0.5f)),
                          binSize);
                      return arith::AddFOp::create(sb, sl, base,
                                                   arith::DivFOp::create(sb, sl, step, grid));
                    };
                    Value y = samplePosition(baseY, iy, binHeight, gridYf);
                    Value xs = samplePosition(baseX, ix, binWidth, gridXf);
                    // Outside [-1, size] a sample weighs nothing.
                    auto outside = [&](Value v, int64_t size) -> Value {
                      return arith::OrIOp::create(
                          sb, sl,
                          arith::CmpFOp::create(sb, sl, arith::CmpFPredicate::OLT, v, fc(-1.0f)),
                          arith::CmpFOp::create(sb, sl, arith::CmpFPredicate::OGT, v,
                                                fc(float(size))));
                    };
                    Value away =
                        arith::OrIOp::create(sb, sl, outside(y, height), outside(xs, width));
                    // Low and high neighbours and the fraction between them.
                    struct Axis {
                      Value low, high, fraction;
                    };
                    auto axis = [&](Value v, int64_t size) -> Axis {
                      v = arith::SelectOp::create(
                          sb, sl,
                          arith::CmpFOp::create(sb, sl, arith::CmpFPredicate::OLE, v, fc(0.0f)),
                          fc(0.0f), v);
                      // Within [0, size] here when the sample counts; clamp for the others.
                      Value clamped = arith::MinimumFOp::create(sb, sl, v, fc(float(size)));
                      Value low = arith::FPToSIOp::create(sb, sl, i64, clamped);
                      Value last = arith::ConstantIntOp::create(sb, sl, i64, size - 1);
                      Value atEnd =
                          arith::CmpIOp::create(sb, sl, arith::CmpIPredicate::sge, low, last);
                      Value lowIndex = arith::SelectOp::create(sb, sl, atEnd, last, low);
                      Value highIndex = arith::SelectOp::create(
                          sb, sl, atEnd, last,
                          arith::AddIOp::create(sb, sl, low,
                                                arith::ConstantIntOp::create(sb, sl, i64, 1)));
                      Value position = arith::SelectOp::create(
                          sb, sl, atEnd, arith::SIToFPOp::create(sb, sl, f32, last), clamped);
                      Value fraction = arith::SubFOp::create(
                          sb, sl, position, arith::SIToFPOp::create(sb, sl, f32, lowIndex));
                      return {toIndex(sb, sl, lowIndex), toIndex(sb, sl, highIndex), fraction};
                    };
                    Axis ay = axis(y, height), ax = axis(xs, width);
                    Value zero = fc(0.0f), one = fc(1.0f);
                    Value ly = arith::SelectOp::create(sb, sl, away, zero, ay.fraction);
                    Value lx = arith::SelectOp::create(sb, sl, away, zero, ax.fraction);
                    Value hy = arith::SelectOp::create(
                        sb, sl, away, zero, arith::SubFOp::create(sb, sl, one, ay.fraction));
                    Value hx = arith::SubFOp::create(sb, sl, one, ax.fraction);
                    Value c00 = indexConstant(sb, sl, 0);
                    auto at = [&](Value yi, Value xi) -> Value {
                      yi = arith::SelectOp::create(sb, sl, away, c00, yi);
                      xi = arith::SelectOp::create(sb, sl, away, c00, xi);
                      return tensor::ExtractOp::create(sb, sl, x,
                                                       ValueRange{batch, channel, yi, xi});
                    };
                    // w1..w4 = hy hx, hy lx, ly hx, ly lx (all 0 away).
                    Value w1 = arith::MulFOp::create(sb, sl, hy, hx);
                    Value w2 = arith::MulFOp::create(sb, sl, hy, lx);
                    Value w3 = arith::MulFOp::create(sb, sl, ly, hx);
                    Value w4 = arith::MulFOp::create(sb, sl, ly, lx);
                    Value t1 = arith::MulFOp::create(sb, sl, w1, at(ay.low, ax.low));
                    Value t2 = arith::MulFOp::create(sb, sl, w2, at(ay.low, ax.high));
                    Value t3 = arith::MulFOp::create(sb, sl, w3, at(ay.high, ax.low));
                    Value t4 = arith::MulFOp::create(sb, sl, w4, at(ay.high, ax.high));
                    Value next;
                    if (max) {
                      Value v = arith::MaximumFOp::create(
                          sb, sl,
                          arith::MaximumFOp::create(sb, sl,
                                                    arith::MaximumFOp::create(sb, sl, t1, t2), t3),
                          t4);
                      next = arith::SelectOp::create(sb, sl, iter[1], v,
                                                     arith::MaximumFOp::create(sb, sl, iter[0], v));
                    } else {
                      Value v = arith::AddFOp::create(
                          sb, sl,
                          arith::AddFOp::create(sb, sl, arith::AddFOp::create(sb, sl, t1, t2), t3),
                          t4);
                      next = arith::AddFOp::create(sb, sl, iter[0], v);
                    }
                    scf::YieldOp::create(
                        sb, sl,
                        ValueRange{next, arith::ConstantIntOp::create(sb, sl, sb.getI1Type(), 0)});
                  });
              scf::YieldOp::create(yb, yl, columns.getResults());
            });
        Value result = rows.getResult(0);
        if (!max)
          result = arith::DivFOp::create(gb, gl, result, toFloat(samples));
        linalg::YieldOp::create(gb, gl, result);
      });
  ctx.setOutput(0, generic.getResult(0));
  return success();
}

} // namespace

void hasten::onnx_import::registerDetectionConverters(ConverterTable &table) {
  table["NonMaxSuppression"] = convertNonMaxSuppression;
  table["RoiAlign"] = convertRoiAlign;
}
