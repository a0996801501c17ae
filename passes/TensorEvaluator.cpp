//===- TensorEvaluator.cpp - compile-time evaluation of small tensor ops ---===//

#include "TensorEvaluator.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>
#include <cstring>

using namespace mlir;
using namespace hasten;

namespace {

/// A value of `type` as the element type stores it: f32 and f16 round,
/// integers wrap to their width.
double roundToType(double v, Type type) {
  if (type.isF32())
    return double(float(v));
  if (type.isF16() || type.isBF16()) {
    APFloat f(v);
    bool lost = false;
    f.convert(cast<FloatType>(type).getFloatSemantics(), APFloat::rmNearestTiesToEven, &lost);
    return f.convertToDouble();
  }
  if (auto integer = dyn_cast<IntegerType>(type)) {
    if (integer.getWidth() == 1)
      return v != 0 ? 1 : 0;
    if (integer.getWidth() < 64) {
      int64_t i = int64_t(v);
      unsigned shift = 64 - integer.getWidth();
      return double(int64_t(uint64_t(i) << shift) >> shift);
    }
  }
  return v;
}

bool isStatic(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  return tensor && tensor.hasStaticShape();
}

SmallVector<int64_t> stridesOf(ArrayRef<int64_t> shape) {
  SmallVector<int64_t> strides(shape.size(), 1);
  for (int64_t d = int64_t(shape.size()) - 2; d >= 0; --d)
    strides[d] = strides[d + 1] * shape[d + 1];
  return strides;
}

/// Evaluates one scalar op of a linalg body; false for an op it does not know.
bool evaluateScalar(Operation *op, ArrayRef<double> in, double &out, ArrayRef<int64_t> point) {
  auto i = [&](unsigned n) { return int64_t(in[n]); };
  auto u = [&](unsigned n) { return uint64_t(int64_t(in[n])); };
  bool ok = true;
  llvm::TypeSwitch<Operation *>(op)
      .Case([&](arith::AddFOp) { out = in[0] + in[1]; })
      .Case([&](arith::SubFOp) { out = in[0] - in[1]; })
      .Case([&](arith::MulFOp) { out = in[0] * in[1]; })
      .Case([&](arith::DivFOp) { out = in[0] / in[1]; })
      .Case([&](arith::RemFOp) { out = std::fmod(in[0], in[1]); })
      .Case([&](arith::NegFOp) { out = -in[0]; })
      .Case([&](arith::MaximumFOp) {
        out = std::isnan(in[0]) || std::isnan(in[1]) ? NAN : std::max(in[0], in[1]);
      })
      .Case([&](arith::MinimumFOp) {
        out = std::isnan(in[0]) || std::isnan(in[1]) ? NAN : std::min(in[0], in[1]);
      })
      .Case([&](arith::MaxNumFOp) { out = std::fmax(in[0], in[1]); })
      .Case([&](arith::MinNumFOp) { out = std::fmin(in[0], in[1]); })
      .Case([&](arith::AddIOp) { out = double(i(0) + i(1)); })
      .Case([&](arith::SubIOp) { out = double(i(0) - i(1)); })
      .Case([&](arith::MulIOp) { out = double(i(0) * i(1)); })
      .Case([&](arith::DivSIOp) { ok = i(1) != 0; out = ok ? double(i(0) / i(1)) : 0; })
      .Case([&](arith::RemSIOp) { ok = i(1) != 0; out = ok ? double(i(0) % i(1)) : 0; })
      .Case([&](arith::DivUIOp) { ok = u(1) != 0; out = ok ? double(u(0) / u(1)) : 0; })
      .Case([&](arith::RemUIOp) { ok = u(1) != 0; out = ok ? double(u(0) % u(1)) : 0; })
      .Case([&](arith::MaxSIOp) { out = double(std::max(i(0), i(1))); })
      .Case([&](arith::MinSIOp) { out = double(std::min(i(0), i(1))); })
      .Case([&](arith::AndIOp) { out = double(i(0) & i(1)); })
      .Case([&](arith::OrIOp) { out = double(i(0) | i(1)); })
      .Case([&](arith::XOrIOp) { out = double(i(0) ^ i(1)); })
      .Case([&](arith::SelectOp) { out = in[0] != 0 ? in[1] : in[2]; })
      .Case([&](arith::CmpFOp cmp) {
        double a = in[0], b = in[1];
        bool unordered = std::isnan(a) || std::isnan(b);
        using P = arith::CmpFPredicate;
        switch (cmp.getPredicate()) {
        case P::OEQ: out = !unordered && a == b; break;
        case P::OGT: out = !unordered && a > b; break;
        case P::OGE: out = !unordered && a >= b; break;
        case P::OLT: out = !unordered && a < b; break;
        case P::OLE: out = !unordered && a <= b; break;
        case P::ONE: out = !unordered && a != b; break;
        case P::ORD: out = !unordered; break;
        case P::UEQ: out = unordered || a == b; break;
        case P::UGT: out = unordered || a > b; break;
        case P::UGE: out = unordered || a >= b; break;
        case P::ULT: out = unordered || a < b; break;
        case P::ULE: out = unordered || a <= b; break;
        case P::UNE: out = unordered || a != b; break;
        case P::UNO: out = unordered; break;
        case P::AlwaysTrue: out = 1; break;
        case P::AlwaysFalse: out = 0; break;
        }
      })
      .Case([&](arith::CmpIOp cmp) {
        using P = arith::CmpIPredicate;
        switch (cmp.getPredicate()) {
        case P::eq: out = i(0) == i(1); break;
        case P::ne: out = i(0) != i(1); break;
        case P::slt: out = i(0) < i(1); break;
        case P::sle: out = i(0) <= i(1); break;
        case P::sgt: out = i(0) > i(1); break;
        case P::sge: out = i(0) >= i(1); break;
        case P::ult: out = u(0) < u(1); break;
        case P::ule: out = u(0) <= u(1); break;
        case P::ugt: out = u(0) > u(1); break;
        case P::uge: out = u(0) >= u(1); break;
        }
      })
      .Case<arith::SIToFPOp, arith::ExtFOp, arith::TruncFOp, arith::ExtSIOp, arith::TruncIOp,
            arith::IndexCastOp>([&](Operation *) { out = in[0]; })
      .Case([&](arith::UIToFPOp) { out = double(u(0)); })
      .Case([&](arith::ExtUIOp cast) {
        unsigned width = cast.getIn().getType().getIntOrFloatBitWidth();
        out = width >= 64 ? in[0] : double(u(0) & ((uint64_t(1) << width) - 1));
      })
      .Case<arith::FPToSIOp, arith::FPToUIOp>([&](Operation *) { out = std::trunc(in[0]); })
      .Case([&](arith::ConstantOp constant) {
        if (auto f = dyn_cast<FloatAttr>(constant.getValue()))
          out = f.getValueAsDouble();
        else if (auto n = dyn_cast<IntegerAttr>(constant.getValue()))
          out = n.getType().isInteger(1) ? double(n.getValue().getBoolValue())
                                         : double(n.getValue().getSExtValue());
        else
          ok = false;
      })
      .Case([&](math::ExpOp) { out = std::exp(in[0]); })
      .Case([&](math::Exp2Op) { out = std::exp2(in[0]); })
      .Case([&](math::ExpM1Op) { out = std::expm1(in[0]); })
      .Case([&](math::LogOp) { out = std::log(in[0]); })
      .Case([&](math::Log1pOp) { out = std::log1p(in[0]); })
      .Case([&](math::SinOp) { out = std::sin(in[0]); })
      .Case([&](math::CosOp) { out = std::cos(in[0]); })
      .Case([&](math::TanOp) { out = std::tan(in[0]); })
      .Case([&](math::TanhOp) { out = std::tanh(in[0]); })
      .Case([&](math::AtanOp) { out = std::atan(in[0]); })
      .Case([&](math::SqrtOp) { out = std::sqrt(in[0]); })
      .Case([&](math::RsqrtOp) { out = 1.0 / std::sqrt(in[0]); })
      .Case([&](math::ErfOp) { out = std::erf(in[0]); })
      .Case([&](math::PowFOp) { out = std::pow(in[0], in[1]); })
      .Case([&](math::FPowIOp) { out = std::pow(in[0], in[1]); })
      .Case([&](math::AbsFOp) { out = std::fabs(in[0]); })
      .Case([&](math::FloorOp) { out = std::floor(in[0]); })
      .Case([&](math::CeilOp) { out = std::ceil(in[0]); })
      .Case([&](math::RoundOp) { out = std::round(in[0]); })
      .Case([&](math::RoundEvenOp) { out = std::nearbyint(in[0]); })
      .Case([&](linalg::IndexOp index) { out = double(point[index.getDim()]); })
      .Default([&](Operation *) { ok = false; });
  if (ok && op->getNumResults() == 1)
    out = roundToType(out, op->getResult(0).getType());
  return ok && op->getNumResults() == 1;
}

} // namespace

const KnownTensor *TensorEvaluator::lookup(Value value) const {
  auto it = known.find(value);
  return it == known.end() ? nullptr : &it->second;
}

std::optional<KnownTensor> TensorEvaluator::fromAttribute(Attribute attr) {
  auto elements = dyn_cast<ElementsAttr>(attr);
  if (!elements)
    return std::nullopt;
  auto type = dyn_cast<RankedTensorType>(elements.getType());
  if (!type || !type.hasStaticShape())
    return std::nullopt;
  Type element = type.getElementType();
  KnownTensor tensor{type, {}};
  tensor.elements.reserve(type.getNumElements());
  if (auto dense = dyn_cast<DenseElementsAttr>(attr)) {
    if (isa<FloatType>(element)) {
      for (const APFloat &v : dense.getValues<APFloat>())
        tensor.elements.push_back(v.convertToDouble());
    } else if (auto integer = dyn_cast<IntegerType>(element)) {
      for (const APInt &v : dense.getValues<APInt>())
        tensor.elements.push_back(integer.getWidth() == 1 ? double(v.getBoolValue())
                                                          : double(v.getSExtValue()));
    } else if (element.isIndex()) {
      for (const APInt &v : dense.getValues<APInt>())
        tensor.elements.push_back(double(v.getSExtValue()));
    } else {
      return std::nullopt;
    }
    return tensor;
  }
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(attr)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob)
      return std::nullopt;
    ArrayRef<char> bytes = blob->getData();
    int64_t count = type.getNumElements();
    auto read = [&](auto zero) -> bool {
      using T = decltype(zero);
      if (int64_t(bytes.size()) != count * int64_t(sizeof(T)))
        return false;
      for (int64_t n = 0; n < count; ++n) {
        T v;
        std::memcpy(&v, bytes.data() + n * sizeof(T), sizeof(T));
        tensor.elements.push_back(double(v));
      }
      return true;
    };
    bool ok = element.isF32()        ? read(float())
              : element.isF64()      ? read(double())
              : element.isInteger(64) ? read(int64_t())
              : element.isInteger(32) ? read(int32_t())
              : element.isInteger(16) ? read(int16_t())
              : element.isInteger(8)  ? read(int8_t())
                                      : false;
    if (!ok)
      return std::nullopt;
    return tensor;
  }
  return std::nullopt;
}

DenseElementsAttr TensorEvaluator::toAttribute(const KnownTensor &tensor) {
  Type element = tensor.type.getElementType();
  if (element.isF32()) {
    std::vector<float> values(tensor.elements.begin(), tensor.elements.end());
    return DenseElementsAttr::get(tensor.type, ArrayRef<float>(values));
  }
  if (element.isF64())
    return DenseElementsAttr::get(tensor.type, ArrayRef<double>(tensor.elements));
  if (element.isInteger(64)) {
    std::vector<int64_t> values(tensor.elements.begin(), tensor.elements.end());
    return DenseElementsAttr::get(tensor.type, ArrayRef<int64_t>(values));
  }
  SmallVector<Attribute> attrs;
  attrs.reserve(tensor.elements.size());
  for (double v : tensor.elements) {
    if (auto f = dyn_cast<FloatType>(element))
      attrs.push_back(FloatAttr::get(f, v));
    else
      attrs.push_back(IntegerAttr::get(element, int64_t(v)));
  }
  return DenseElementsAttr::get(tensor.type, attrs);
}

bool TensorEvaluator::evaluate(Operation *op) {
  // Unknown producers (constants, a transposed weight) are evaluated when
  // needed; a block argument stays unknown.
  for (Value operand : op->getOperands()) {
    if (known.count(operand) || !isa<RankedTensorType>(operand.getType()))
      continue;
    Operation *def = operand.getDefiningOp();
    if (!def || !evaluate(def))
      return false;
  }
  for (Value result : op->getResults())
    if (!isStatic(result.getType()))
      return false;
  auto input = [&](unsigned n) -> const KnownTensor & { return known[op->getOperand(n)]; };
  auto resultType = [&] { return cast<RankedTensorType>(op->getResult(0).getType()); };
  return llvm::TypeSwitch<Operation *, bool>(op)
      .Case([&](arith::ConstantOp constant) {
        std::optional<KnownTensor> value = fromAttribute(constant.getValue());
        if (value)
          known[constant.getResult()] = std::move(*value);
        return value.has_value();
      })
      .Case([&](tensor::EmptyOp empty) {
        known[empty.getResult()] = {resultType(),
                                    std::vector<double>(resultType().getNumElements(), 0.0)};
        return true;
      })
      .Case<tensor::ExpandShapeOp, tensor::CollapseShapeOp, tensor::CastOp>([&](Operation *) {
        if (op->getNumOperands() != 1 || !known.count(op->getOperand(0)))
          return false;
        known[op->getResult(0)] = {resultType(), input(0).elements};
        return true;
      })
      .Case([&](tensor::ExtractSliceOp slice) {
        if (!known.count(slice.getSource()) || slice.getOffsets().size() ||
            slice.getSizes().size() || slice.getStrides().size() ||
            !isStatic(slice.getSource().getType()))
          return false;
        const KnownTensor &source = input(0);
        ArrayRef<int64_t> offsets = slice.getStaticOffsets(), strides = slice.getStaticStrides();
        SmallVector<int64_t> sourceStrides = stridesOf(source.type.getShape());
        // The slice's own shape before rank reduction.
        ArrayRef<int64_t> sizes = slice.getStaticSizes();
        int64_t count = resultType().getNumElements();
        std::vector<double> out;
        out.reserve(count);
        SmallVector<int64_t> index(sizes.size(), 0);
        for (int64_t n = 0; n < count; ++n) {
          int64_t at = 0;
          for (size_t d = 0; d < sizes.size(); ++d)
            at += (offsets[d] + index[d] * strides[d]) * sourceStrides[d];
          out.push_back(source.elements[at]);
          for (int64_t d = int64_t(sizes.size()) - 1; d >= 0; --d) {
            if (++index[d] < sizes[d])
              break;
            index[d] = 0;
          }
        }
        known[slice.getResult()] = {resultType(), std::move(out)};
        return true;
      })
      .Case([&](tensor::ConcatOp concat) {
        int64_t dim = concat.getDim();
        ArrayRef<int64_t> shape = resultType().getShape();
        int64_t outer = 1;
        for (int64_t d = 0; d < dim; ++d)
          outer *= shape[d];
        std::vector<double> out;
        out.reserve(resultType().getNumElements());
        for (int64_t o = 0; o < outer; ++o)
          for (Value part : concat.getInputs()) {
            const KnownTensor &t = known[part];
            int64_t inner = int64_t(t.elements.size()) / outer;
            out.insert(out.end(), t.elements.begin() + o * inner,
                       t.elements.begin() + (o + 1) * inner);
          }
        known[concat.getResult()] = {resultType(), std::move(out)};
        return true;
      })
      .Default([&](Operation *) { return isa<linalg::LinalgOp>(op) && evaluateLinalg(op); });
}

bool TensorEvaluator::evaluateLinalg(Operation *op) {
  auto linalgOp = cast<linalg::LinalgOp>(op);
  if (!linalgOp.hasPureTensorSemantics() || op->getNumRegions() != 1 ||
      !op->getRegion(0).hasOneBlock())
    return false;
  SmallVector<int64_t> ranges = linalgOp.getStaticLoopRanges();
  int64_t points = 1;
  for (int64_t range : ranges) {
    if (ShapedType::isDynamic(range))
      return false;
    points *= range;
    if (points > maxPoints)
      return false;
  }
  SmallVector<AffineMap> maps = linalgOp.getIndexingMapsArray();
  SmallVector<OpOperand *> operands;
  for (OpOperand &operand : op->getOpOperands())
    operands.push_back(&operand);
  SmallVector<const KnownTensor *> inputs;
  SmallVector<SmallVector<int64_t>> strides;
  // Scalar operands (a fill's value) read as rank-0 tensors.
  std::vector<KnownTensor> scalars;
  scalars.reserve(operands.size());
  for (OpOperand *operand : operands) {
    const KnownTensor *t = lookup(operand->get());
    if (!t && !isa<ShapedType>(operand->get().getType())) {
      auto constant = operand->get().getDefiningOp<arith::ConstantOp>();
      double value = 0;
      if (auto f = constant ? dyn_cast<FloatAttr>(constant.getValue()) : FloatAttr())
        value = f.getValueAsDouble();
      else if (auto n = constant ? dyn_cast<IntegerAttr>(constant.getValue()) : IntegerAttr())
        value = double(n.getValue().getSExtValue());
      else
        return false;
      scalars.push_back({RankedTensorType::get({}, operand->get().getType()), {value}});
      t = &scalars.back();
    }
    if (!t)
      return false;
    inputs.push_back(t);
    strides.push_back(stridesOf(t->type.getShape()));
  }
  // The outputs start as the inits and are updated in place, so that a
  // reduction accumulates in iteration order.
  unsigned numInputs = linalgOp.getNumDpsInputs();
  SmallVector<std::vector<double>> outputs;
  for (unsigned n = numInputs; n < operands.size(); ++n)
    outputs.push_back(inputs[n]->elements);

  Block &body = op->getRegion(0).front();
  llvm::DenseMap<Value, unsigned> slots;
  unsigned numSlots = 0;
  for (BlockArgument arg : body.getArguments())
    slots[arg] = numSlots++;
  // Scalars the body captures from outside: constants only.
  SmallVector<std::pair<unsigned, double>> captured;
  auto capture = [&](Value v) {
    if (slots.count(v))
      return true;
    auto constant = v.getDefiningOp<arith::ConstantOp>();
    double value = 0;
    if (auto f = constant ? dyn_cast<FloatAttr>(constant.getValue()) : FloatAttr())
      value = f.getValueAsDouble();
    else if (auto n = constant ? dyn_cast<IntegerAttr>(constant.getValue()) : IntegerAttr())
      value = n.getType().isInteger(1) ? double(n.getValue().getBoolValue())
                                       : double(n.getValue().getSExtValue());
    else
      return false;
    captured.push_back({numSlots, value});
    slots[v] = numSlots++;
    return true;
  };
  for (Operation &inner : body) {
    for (Value operand : inner.getOperands())
      if (!capture(operand))
        return false;
    if (&inner == body.getTerminator())
      break;
    if (inner.getNumResults() != 1 || inner.getNumRegions() != 0)
      return false;
    slots[inner.getResult(0)] = numSlots++;
  }
  Operation *yield = body.getTerminator();
  std::vector<double> values(numSlots);
  for (auto [slot, value] : captured)
    values[slot] = value;
  SmallVector<int64_t> point(ranges.size(), 0), at(ranges.size());
  SmallVector<int64_t> flat(operands.size());
  SmallVector<double, 4> args;
  for (int64_t p = 0; p < points; ++p) {
    for (unsigned n = 0; n < operands.size(); ++n) {
      SmallVector<int64_t> index = maps[n].compose(point);
      int64_t offset = 0;
      for (size_t d = 0; d < index.size(); ++d)
        offset += index[d] * strides[n][d];
      flat[n] = offset;
      values[n] = n < numInputs ? inputs[n]->elements[offset] : outputs[n - numInputs][offset];
    }
    for (Operation &inner : body.without_terminator()) {
      args.clear();
      for (Value operand : inner.getOperands()) {
        auto slot = slots.find(operand);
        if (slot == slots.end())
          return false; // a value from outside the body
        args.push_back(values[slot->second]);
      }
      if (!evaluateScalar(&inner, args, values[slots[inner.getResult(0)]], point))
        return false;
    }
    for (unsigned n = 0; n < yield->getNumOperands(); ++n) {
      auto slot = slots.find(yield->getOperand(n));
      if (slot == slots.end())
        return false;
      Type element = cast<RankedTensorType>(op->getResult(n).getType()).getElementType();
      outputs[n][flat[numInputs + n]] = roundToType(values[slot->second], element);
    }
    for (int64_t d = int64_t(point.size()) - 1; d >= 0; --d) {
      if (++point[d] < ranges[d])
        break;
      point[d] = 0;
    }
  }
  for (unsigned n = 0; n < op->getNumResults(); ++n)
    known[op->getResult(n)] = {cast<RankedTensorType>(op->getResult(n).getType()),
                               std::move(outputs[n])};
  return true;
}
