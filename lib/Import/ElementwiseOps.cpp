//===- ElementwiseOps.cpp - ONNX elementwise ops to linalg.generic ---------===//
//
// Unary, binary and variadic elementwise ops become one linalg.generic each,
// with numpy broadcasting made explicit in the indexing maps. Small integer
// tensors (shape arithmetic) are computed element by element instead, so that
// they fold to constants when the dimensions are static.
//
//===----------------------------------------------------------------------===//

#include "ImporterInternal.h"

#include "llvm/ADT/StringSwitch.h"

#include <cmath>

using namespace mlir;
using namespace hasten;
using namespace hasten::onnx_import;

namespace {

/// What a scalar body needs besides its operands.
struct ScalarInfo {
  NodeContext &ctx;
  Type elementType;   // element type of the first operand
  bool isUnsigned;    // signedness of the first operand
};

using ScalarFn = Value (*)(OpBuilder &, Location, ValueRange, const ScalarInfo &);

bool isFloat(Type t) { return isa<FloatType>(t); }

Value cst(OpBuilder &b, Location loc, Type t, double v) {
  return scalarConstant(b, loc, t, v);
}

Value cmpLess(OpBuilder &b, Location loc, Value x, Value y, bool isUnsigned) {
  if (isFloat(x.getType()))
    return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, x, y);
  return arith::CmpIOp::create(b, loc,
                               isUnsigned ? arith::CmpIPredicate::ult
                                          : arith::CmpIPredicate::slt,
                               x, y);
}

//===----------------------------------------------------------------------===//
// Scalar bodies
//===----------------------------------------------------------------------===//

#define FLOAT_UNARY(NAME, OP)                                                  \
  Value NAME(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &) {   \
    return OP::create(b, loc, a[0]);                                           \
  }
FLOAT_UNARY(bodyExp, math::ExpOp)
FLOAT_UNARY(bodyLog, math::LogOp)
FLOAT_UNARY(bodySqrt, math::SqrtOp)
FLOAT_UNARY(bodyErf, math::ErfOp)
FLOAT_UNARY(bodyTanh, math::TanhOp)
FLOAT_UNARY(bodySin, math::SinOp)
FLOAT_UNARY(bodyCos, math::CosOp)
FLOAT_UNARY(bodyTan, math::TanOp)
FLOAT_UNARY(bodyAsin, math::AsinOp)
FLOAT_UNARY(bodyAcos, math::AcosOp)
FLOAT_UNARY(bodyAtan, math::AtanOp)
FLOAT_UNARY(bodySinh, math::SinhOp)
FLOAT_UNARY(bodyCosh, math::CoshOp)
FLOAT_UNARY(bodyAsinh, math::AsinhOp)
FLOAT_UNARY(bodyAcosh, math::AcoshOp)
FLOAT_UNARY(bodyAtanh, math::AtanhOp)
FLOAT_UNARY(bodyCeil, math::CeilOp)
FLOAT_UNARY(bodyFloor, math::FloorOp)
FLOAT_UNARY(bodyRound, math::RoundEvenOp)
#undef FLOAT_UNARY

Value bodyReciprocal(OpBuilder &b, Location loc, ValueRange a,
                     const ScalarInfo &) {
  return arith::DivFOp::create(b, loc, cst(b, loc, a[0].getType(), 1.0), a[0]);
}
Value bodySigmoid(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &) {
  Type t = a[0].getType();
  Value e = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, a[0]));
  return arith::DivFOp::create(
      b, loc, cst(b, loc, t, 1.0),
      arith::AddFOp::create(b, loc, cst(b, loc, t, 1.0), e));
}
Value bodyNeg(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &) {
  if (isFloat(a[0].getType()))
    return arith::NegFOp::create(b, loc, a[0]);
  return arith::SubIOp::create(b, loc, cst(b, loc, a[0].getType(), 0), a[0]);
}
Value bodyAbs(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &info) {
  if (isFloat(a[0].getType()))
    return math::AbsFOp::create(b, loc, a[0]);
  if (info.isUnsigned)
    return a[0];
  return math::AbsIOp::create(b, loc, a[0]);
}
Value bodySign(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &info) {
  Type t = a[0].getType();
  Value zero = cst(b, loc, t, 0), one = cst(b, loc, t, 1),
        minusOne = cst(b, loc, t, -1);
  Value negative = cmpLess(b, loc, a[0], zero, info.isUnsigned);
  Value positive = cmpLess(b, loc, zero, a[0], info.isUnsigned);
  Value r = arith::SelectOp::create(b, loc, negative, minusOne, zero);
  return arith::SelectOp::create(b, loc, positive, one, r);
}
Value bodyRelu(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &info) {
  Value zero = cst(b, loc, a[0].getType(), 0);
  return arith::SelectOp::create(b, loc, cmpLess(b, loc, a[0], zero, info.isUnsigned),
                                 zero, a[0]);
}
Value bodyLeakyRelu(OpBuilder &b, Location loc, ValueRange a,
                    const ScalarInfo &info) {
  Type t = a[0].getType();
  Value scaled = arith::MulFOp::create(
      b, loc, a[0], cst(b, loc, t, info.ctx.getFloat("alpha", 0.01f)));
  return arith::SelectOp::create(b, loc, cmpLess(b, loc, a[0], cst(b, loc, t, 0), false),
                                 scaled, a[0]);
}
Value bodyPRelu(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &info) {
  Type t = a[0].getType();
  Value scaled = isFloat(t) ? (Value)arith::MulFOp::create(b, loc, a[0], a[1])
                            : (Value)arith::MulIOp::create(b, loc, a[0], a[1]);
  return arith::SelectOp::create(
      b, loc, cmpLess(b, loc, a[0], cst(b, loc, t, 0), info.isUnsigned), scaled,
      a[0]);
}
Value expm1Scaled(OpBuilder &b, Location loc, Value x, double alpha) {
  Type t = x.getType();
  Value em1 = arith::SubFOp::create(b, loc, math::ExpOp::create(b, loc, x),
                                    cst(b, loc, t, 1.0));
  return arith::MulFOp::create(b, loc, em1, cst(b, loc, t, alpha));
}
Value bodyElu(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &info) {
  Type t = a[0].getType();
  Value neg = expm1Scaled(b, loc, a[0], info.ctx.getFloat("alpha", 1.0f));
  return arith::SelectOp::create(b, loc, cmpLess(b, loc, a[0], cst(b, loc, t, 0), false),
                                 neg, a[0]);
}
Value bodySelu(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &info) {
  Type t = a[0].getType();
  double alpha = info.ctx.getFloat("alpha", 1.67326319217681884765625f);
  double gamma = info.ctx.getFloat("gamma", 1.05070102214813232421875f);
  Value neg = expm1Scaled(b, loc, a[0], alpha);
  Value positive = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, a[0],
                                         cst(b, loc, t, 0));
  Value r = arith::SelectOp::create(b, loc, positive, a[0], neg);
  return arith::MulFOp::create(b, loc, r, cst(b, loc, t, gamma));
}
Value bodyCelu(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &info) {
  Type t = a[0].getType();
  double alpha = info.ctx.getFloat("alpha", 1.0f);
  Value scaledX = arith::DivFOp::create(b, loc, a[0], cst(b, loc, t, alpha));
  Value neg = expm1Scaled(b, loc, scaledX, alpha);
  Value zero = cst(b, loc, t, 0);
  return arith::AddFOp::create(b, loc, arith::MaximumFOp::create(b, loc, a[0], zero),
                               arith::MinimumFOp::create(b, loc, neg, zero));
}
Value clampUnit(OpBuilder &b, Location loc, Value x) {
  Type t = x.getType();
  return arith::MinimumFOp::create(
      b, loc, arith::MaximumFOp::create(b, loc, x, cst(b, loc, t, 0)),
      cst(b, loc, t, 1));
}
Value bodyHardSigmoid(OpBuilder &b, Location loc, ValueRange a,
                      const ScalarInfo &info) {
  Type t = a[0].getType();
  Value lin = arith::AddFOp::create(
      b, loc,
      arith::MulFOp::create(b, loc, a[0],
                            cst(b, loc, t, info.ctx.getFloat("alpha", 0.2f))),
      cst(b, loc, t, info.ctx.getFloat("beta", 0.5f)));
  return clampUnit(b, loc, lin);
}
Value bodyHardSwish(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &) {
  Type t = a[0].getType();
  Value lin = arith::AddFOp::create(
      b, loc, arith::MulFOp::create(b, loc, a[0], cst(b, loc, t, 1.0 / 6.0)),
      cst(b, loc, t, 0.5));
  return arith::MulFOp::create(b, loc, a[0], clampUnit(b, loc, lin));
}
Value bodySoftplus(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &) {
  return math::Log1pOp::create(b, loc, math::ExpOp::create(b, loc, a[0]));
}
Value bodySoftsign(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &) {
  Type t = a[0].getType();
  Value denom = arith::AddFOp::create(b, loc, cst(b, loc, t, 1.0),
                                      math::AbsFOp::create(b, loc, a[0]));
  return arith::DivFOp::create(b, loc, a[0], denom);
}
Value bodyThresholdedRelu(OpBuilder &b, Location loc, ValueRange a,
                          const ScalarInfo &info) {
  Type t = a[0].getType();
  Value above = arith::CmpFOp::create(
      b, loc, arith::CmpFPredicate::OGT, a[0],
      cst(b, loc, t, info.ctx.getFloat("alpha", 1.0f)));
  return arith::SelectOp::create(b, loc, above, a[0], cst(b, loc, t, 0));
}
Value bodyShrink(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &info) {
  // x < -lambd: x + bias; x > lambd: x - bias; else 0.
  Type t = a[0].getType();
  Value lambd = cst(b, loc, t, info.ctx.getFloat("lambd", 0.5f));
  Value bias = cst(b, loc, t, info.ctx.getFloat("bias", 0.0f));
  Value below = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, a[0],
                                      arith::NegFOp::create(b, loc, lambd));
  Value above = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, a[0], lambd);
  Value zero = cst(b, loc, t, 0);
  return arith::SelectOp::create(
      b, loc, below, arith::AddFOp::create(b, loc, a[0], bias),
      arith::SelectOp::create(b, loc, above, arith::SubFOp::create(b, loc, a[0], bias), zero));
}
Value bodyBitShift(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &info) {
  // Unsigned operands only (the op's types): a logical shift. A shift by
  // the width or more gives 0, as numpy's does, rather than arith's poison.
  Type t = a[0].getType();
  unsigned width = t.getIntOrFloatBitWidth();
  bool left = info.ctx.getString("direction", "") == "LEFT";
  Value shifted = left ? Value(arith::ShLIOp::create(b, loc, a[0], a[1]))
                       : Value(arith::ShRUIOp::create(b, loc, a[0], a[1]));
  Value inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, a[1],
                                        cst(b, loc, t, width));
  return arith::SelectOp::create(b, loc, inRange, shifted, cst(b, loc, t, 0));
}
Value bodyIsNaN(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &) {
  return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNO, a[0], a[0]);
}
Value bodyIsInf(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &info) {
  auto t = cast<FloatType>(a[0].getType());
  auto inf = [&](bool negative) {
    return arith::ConstantOp::create(
        b, loc, b.getFloatAttr(t, APFloat::getInf(t.getFloatSemantics(), negative)));
  };
  Value result = cst(b, loc, b.getI1Type(), 0);
  if (info.ctx.getInt("detect_positive", 1))
    result = arith::OrIOp::create(
        b, loc, result,
        arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, a[0], inf(false)));
  if (info.ctx.getInt("detect_negative", 1))
    result = arith::OrIOp::create(
        b, loc, result,
        arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, a[0], inf(true)));
  return result;
}
Value bodyNot(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &) {
  return arith::XOrIOp::create(b, loc, a[0], cst(b, loc, a[0].getType(), 1));
}

// Binary and variadic bodies.
Value bodyAdd(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &) {
  Value r = a[0];
  for (Value v : a.drop_front())
    r = isFloat(r.getType()) ? (Value)arith::AddFOp::create(b, loc, r, v)
                             : (Value)arith::AddIOp::create(b, loc, r, v);
  return r;
}
Value bodySub(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &) {
  if (isFloat(a[0].getType()))
    return arith::SubFOp::create(b, loc, a[0], a[1]);
  return arith::SubIOp::create(b, loc, a[0], a[1]);
}
Value bodyMul(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &) {
  if (isFloat(a[0].getType()))
    return arith::MulFOp::create(b, loc, a[0], a[1]);
  return arith::MulIOp::create(b, loc, a[0], a[1]);
}
Value bodyDiv(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &info) {
  if (isFloat(a[0].getType()))
    return arith::DivFOp::create(b, loc, a[0], a[1]);
  if (info.isUnsigned)
    return arith::DivUIOp::create(b, loc, a[0], a[1]);
  return arith::DivSIOp::create(b, loc, a[0], a[1]);
}
Value bodyMean(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &info) {
  Value sum = bodyAdd(b, loc, a, info);
  return arith::DivFOp::create(b, loc, sum,
                               cst(b, loc, sum.getType(), (double)a.size()));
}
/// Folds the operands with max (or min), in the operands' own signedness.
Value foldMinMax(OpBuilder &b, Location loc, ValueRange a, bool isUnsigned, bool max) {
  Value r = a[0];
  for (Value v : a.drop_front()) {
    if (isFloat(r.getType()))
      r = max ? (Value)arith::MaximumFOp::create(b, loc, r, v)
              : (Value)arith::MinimumFOp::create(b, loc, r, v);
    else if (isUnsigned)
      r = max ? (Value)arith::MaxUIOp::create(b, loc, r, v)
              : (Value)arith::MinUIOp::create(b, loc, r, v);
    else
      r = max ? (Value)arith::MaxSIOp::create(b, loc, r, v)
              : (Value)arith::MinSIOp::create(b, loc, r, v);
  }
  return r;
}
Value bodyMax(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &info) {
  return foldMinMax(b, loc, a, info.isUnsigned, /*max=*/true);
}
Value bodyMin(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &info) {
  return foldMinMax(b, loc, a, info.isUnsigned, /*max=*/false);
}
Value bodyPow(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &info) {
  Type t = a[0].getType();
  if (isFloat(t)) {
    Value exponent = castScalar(b, loc, a[1], t, false, false);
    return math::PowFOp::create(b, loc, a[0], exponent);
  }
  // Integer base: compute in f64 like the reference, then convert back.
  Type f64 = b.getF64Type();
  Value base = castScalar(b, loc, a[0], f64, info.isUnsigned, false);
  Value exponent = castScalar(b, loc, a[1], f64, false, false);
  Value r = math::PowFOp::create(b, loc, base, exponent);
  return castScalar(b, loc, r, t, false, info.isUnsigned);
}
Value bodyMod(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &info) {
  Type t = a[0].getType();
  bool fmod = info.ctx.getInt("fmod", 0) != 0;
  if (isFloat(t)) {
    Value r = arith::RemFOp::create(b, loc, a[0], a[1]);
    if (fmod)
      return r;
    // Python-style: the result takes the sign of the divisor.
    Value zero = cst(b, loc, t, 0);
    Value rNeg = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, r, zero);
    Value dNeg = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, a[1], zero);
    Value rNonZero = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::ONE, r, zero);
    Value fix = arith::AndIOp::create(
        b, loc, rNonZero, arith::XOrIOp::create(b, loc, rNeg, dNeg));
    return arith::SelectOp::create(b, loc, fix,
                                   arith::AddFOp::create(b, loc, r, a[1]), r);
  }
  if (info.isUnsigned)
    return arith::RemUIOp::create(b, loc, a[0], a[1]);
  Value r = arith::RemSIOp::create(b, loc, a[0], a[1]);
  if (fmod)
    return r;
  Value zero = cst(b, loc, t, 0);
  Value rNeg = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, r, zero);
  Value dNeg = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, a[1], zero);
  Value rNonZero = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, r, zero);
  Value fix = arith::AndIOp::create(b, loc, rNonZero,
                                    arith::XOrIOp::create(b, loc, rNeg, dNeg));
  return arith::SelectOp::create(b, loc, fix,
                                 arith::AddIOp::create(b, loc, r, a[1]), r);
}
Value bodyAnd(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &) {
  return arith::AndIOp::create(b, loc, a[0], a[1]);
}
Value bodyOr(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &) {
  return arith::OrIOp::create(b, loc, a[0], a[1]);
}
Value bodyXor(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &) {
  return arith::XOrIOp::create(b, loc, a[0], a[1]);
}
Value compare(OpBuilder &b, Location loc, ValueRange a, bool isUnsigned,
              arith::CmpFPredicate fp, arith::CmpIPredicate sp,
              arith::CmpIPredicate up) {
  if (isFloat(a[0].getType()))
    return arith::CmpFOp::create(b, loc, fp, a[0], a[1]);
  return arith::CmpIOp::create(b, loc, isUnsigned ? up : sp, a[0], a[1]);
}
Value bodyEqual(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &i) {
  return compare(b, loc, a, i.isUnsigned, arith::CmpFPredicate::OEQ,
                 arith::CmpIPredicate::eq, arith::CmpIPredicate::eq);
}
Value bodyLess(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &i) {
  return compare(b, loc, a, i.isUnsigned, arith::CmpFPredicate::OLT,
                 arith::CmpIPredicate::slt, arith::CmpIPredicate::ult);
}
Value bodyLessOrEqual(OpBuilder &b, Location loc, ValueRange a,
                      const ScalarInfo &i) {
  return compare(b, loc, a, i.isUnsigned, arith::CmpFPredicate::OLE,
                 arith::CmpIPredicate::sle, arith::CmpIPredicate::ule);
}
Value bodyGreater(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &i) {
  return compare(b, loc, a, i.isUnsigned, arith::CmpFPredicate::OGT,
                 arith::CmpIPredicate::sgt, arith::CmpIPredicate::ugt);
}
Value bodyGreaterOrEqual(OpBuilder &b, Location loc, ValueRange a,
                         const ScalarInfo &i) {
  return compare(b, loc, a, i.isUnsigned, arith::CmpFPredicate::OGE,
                 arith::CmpIPredicate::sge, arith::CmpIPredicate::uge);
}
Value bodyWhere(OpBuilder &b, Location loc, ValueRange a, const ScalarInfo &) {
  return arith::SelectOp::create(b, loc, a[0], a[1], a[2]);
}

//===----------------------------------------------------------------------===//
// Op descriptions
//===----------------------------------------------------------------------===//

enum class Operands { Float, Numeric, Unsigned, Bool, Any };
enum class Result { SameAsInput, Bool, SecondInput };

struct ElementwiseOp {
  ScalarFn body;
  Operands operands;
  Result result;
  int minInputs, maxInputs;
  /// Body is valid on small integer shape tensors, computed scalar-wise.
  bool scalarizable;
};

const llvm::StringMap<ElementwiseOp> &getElementwiseOps() {
  static const llvm::StringMap<ElementwiseOp> ops = {
      {"Exp", {bodyExp, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Log", {bodyLog, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Sqrt", {bodySqrt, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Erf", {bodyErf, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Tanh", {bodyTanh, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Sin", {bodySin, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Cos", {bodyCos, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Tan", {bodyTan, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Asin", {bodyAsin, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Acos", {bodyAcos, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Atan", {bodyAtan, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Sinh", {bodySinh, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Cosh", {bodyCosh, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Asinh", {bodyAsinh, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Acosh", {bodyAcosh, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Atanh", {bodyAtanh, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Ceil", {bodyCeil, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Floor", {bodyFloor, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Round", {bodyRound, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Reciprocal", {bodyReciprocal, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Sigmoid", {bodySigmoid, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"LeakyRelu", {bodyLeakyRelu, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Elu", {bodyElu, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Selu", {bodySelu, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Celu", {bodyCelu, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"HardSigmoid", {bodyHardSigmoid, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"HardSwish", {bodyHardSwish, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Softplus", {bodySoftplus, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Softsign", {bodySoftsign, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"ThresholdedRelu", {bodyThresholdedRelu, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"Shrink", {bodyShrink, Operands::Float, Result::SameAsInput, 1, 1, false}},
      {"BitShift", {bodyBitShift, Operands::Unsigned, Result::SameAsInput, 2, 2, false}},
      {"IsNaN", {bodyIsNaN, Operands::Float, Result::Bool, 1, 1, false}},
      {"IsInf", {bodyIsInf, Operands::Float, Result::Bool, 1, 1, false}},
      {"Neg", {bodyNeg, Operands::Numeric, Result::SameAsInput, 1, 1, true}},
      {"Abs", {bodyAbs, Operands::Numeric, Result::SameAsInput, 1, 1, true}},
      {"Sign", {bodySign, Operands::Numeric, Result::SameAsInput, 1, 1, true}},
      {"Relu", {bodyRelu, Operands::Numeric, Result::SameAsInput, 1, 1, true}},
      {"PRelu", {bodyPRelu, Operands::Numeric, Result::SameAsInput, 2, 2, false}},
      {"Not", {bodyNot, Operands::Bool, Result::SameAsInput, 1, 1, true}},
      {"Add", {bodyAdd, Operands::Numeric, Result::SameAsInput, 2, 2, true}},
      {"Sub", {bodySub, Operands::Numeric, Result::SameAsInput, 2, 2, true}},
      {"Mul", {bodyMul, Operands::Numeric, Result::SameAsInput, 2, 2, true}},
      {"Div", {bodyDiv, Operands::Numeric, Result::SameAsInput, 2, 2, true}},
      {"Mod", {bodyMod, Operands::Numeric, Result::SameAsInput, 2, 2, true}},
      {"Pow", {bodyPow, Operands::Any, Result::SameAsInput, 2, 2, false}},
      {"Sum", {bodyAdd, Operands::Numeric, Result::SameAsInput, 1, 1 << 20, true}},
      {"Mean", {bodyMean, Operands::Float, Result::SameAsInput, 1, 1 << 20, false}},
      {"Max", {bodyMax, Operands::Numeric, Result::SameAsInput, 1, 1 << 20, true}},
      {"Min", {bodyMin, Operands::Numeric, Result::SameAsInput, 1, 1 << 20, true}},
      {"And", {bodyAnd, Operands::Bool, Result::Bool, 2, 2, true}},
      {"Or", {bodyOr, Operands::Bool, Result::Bool, 2, 2, true}},
      {"Xor", {bodyXor, Operands::Bool, Result::Bool, 2, 2, true}},
      {"Equal", {bodyEqual, Operands::Any, Result::Bool, 2, 2, true}},
      {"Less", {bodyLess, Operands::Numeric, Result::Bool, 2, 2, true}},
      {"LessOrEqual", {bodyLessOrEqual, Operands::Numeric, Result::Bool, 2, 2, true}},
      {"Greater", {bodyGreater, Operands::Numeric, Result::Bool, 2, 2, true}},
      {"GreaterOrEqual", {bodyGreaterOrEqual, Operands::Numeric, Result::Bool, 2, 2, true}},
      {"Where", {bodyWhere, Operands::Any, Result::SecondInput, 3, 3, true}},
  };
  return ops;
}

/// Computes a scalarizable op on tracked small integer tensors element by
/// element; returns false when the operands are not all tracked.
bool tryScalarized(NodeContext &ctx, const ElementwiseOp &op,
                   ArrayRef<Value> inputs, Type resultElement,
                   const ScalarInfo &info) {
  if (!op.scalarizable || !isa<IntegerType>(resultElement))
    return false;
  SmallVector<SmallVector<Value>> elements;
  int64_t length = 1;
  int64_t rank = 0;
  for (unsigned i = 0; i < inputs.size(); ++i) {
    auto type = cast<RankedTensorType>(inputs[i].getType());
    if (!isa<IntegerType>(type.getElementType()))
      return false;
    std::optional<SmallVector<Value>> e = ctx.inputElements(i);
    if (!e)
      return false;
    rank = std::max<int64_t>(rank, type.getRank());
    if (e->size() != 1) {
      if (length != 1 && length != (int64_t)e->size())
        return false;
      length = e->size();
    }
    elements.push_back(*e);
  }
  SmallVector<Value> result;
  for (int64_t k = 0; k < length; ++k) {
    SmallVector<Value> args;
    for (auto &e : elements)
      args.push_back(e.size() == 1 ? e[0] : e[k]);
    result.push_back(op.body(ctx.b, ctx.loc, args, info));
  }
  ctx.setOutputElements(0, result, resultElement, /*scalar=*/rank == 0,
                        info.isUnsigned && op.result == Result::SameAsInput);
  return true;
}

LogicalResult convertElementwise(NodeContext &ctx) {
  const ElementwiseOp &op = getElementwiseOps().find(ctx.node.op_type())->second;
  SmallVector<Value> inputs;
  for (int i = 0; i < ctx.node.input_size(); ++i) {
    if (!ctx.hasInput(i))
      return ctx.fail("input #" + std::to_string(i) + " is missing");
    inputs.push_back(ctx.input(i));
  }
  if ((int)inputs.size() < op.minInputs || (int)inputs.size() > op.maxInputs)
    return ctx.fail("expects " + std::to_string(op.minInputs) +
                    (op.minInputs == op.maxInputs
                         ? ""
                         : " or more") +
                    " inputs, got " + std::to_string(inputs.size()));
  // Operand element types: all equal (Pow excepted; Where checks branches).
  unsigned firstData = ctx.node.op_type() == "Where" ? 1 : 0;
  Type element = cast<RankedTensorType>(inputs[firstData].getType()).getElementType();
  for (unsigned i = firstData; i < inputs.size(); ++i) {
    Type other = cast<RankedTensorType>(inputs[i].getType()).getElementType();
    if (op.operands != Operands::Any || ctx.node.op_type() != "Pow") {
      if (other != element)
        return ctx.emitError() << "operand types differ: input #" << firstData
                               << " is " << inputs[firstData].getType()
                               << " but input #" << i << " is "
                               << inputs[i].getType();
    }
  }
  // Static sizes must broadcast (numpy's rules, aligned from the last
  // dimension): ONNX's shape inference does not check every op (PRelu).
  int64_t rank = 0;
  for (Value v : inputs)
    rank = std::max(rank, cast<RankedTensorType>(v.getType()).getRank());
  for (int64_t d = 1; d <= rank; ++d) {
    int64_t size = 1;
    unsigned from = 0;
    for (unsigned i = 0; i < inputs.size(); ++i) {
      auto type = cast<RankedTensorType>(inputs[i].getType());
      if (type.getRank() < d || type.isDynamicDim(type.getRank() - d))
        continue;
      int64_t other = type.getDimSize(type.getRank() - d);
      if (other == 1)
        continue;
      if (size != 1 && other != size)
        return ctx.emitError() << "inputs do not broadcast: input #" << from << " is "
                               << inputs[from].getType() << " and input #" << i << " is "
                               << inputs[i].getType() << " (sizes " << size << " and " << other
                               << ", dimension " << -d << " from the end)";
      size = other;
      from = i;
    }
  }
  if (ctx.node.op_type() == "Where" &&
      !cast<RankedTensorType>(inputs[0].getType()).getElementType().isInteger(1))
    return ctx.emitError() << "condition must be a bool tensor, got "
                           << inputs[0].getType();
  bool isFloatElement = isa<FloatType>(element);
  if (op.operands == Operands::Float && !isFloatElement)
    return ctx.emitError() << "expects floating-point operands, got "
                           << inputs[0].getType();
  if (op.operands == Operands::Bool && !element.isInteger(1))
    return ctx.emitError() << "expects bool operands, got " << inputs[0].getType();
  if (op.operands == Operands::Unsigned &&
      (!isa<IntegerType>(element) || element.isInteger(1) || !ctx.info(firstData).isUnsigned))
    return ctx.emitError() << "expects unsigned integer operands, got " << inputs[0].getType();
  if (ctx.node.op_type() == "BitShift" && ctx.getString("direction", "") != "LEFT" &&
      ctx.getString("direction", "") != "RIGHT")
    return ctx.emitError() << "direction must be \"LEFT\" or \"RIGHT\", got \""
                           << ctx.getString("direction", "") << "\"";

  Type resultElement = op.result == Result::Bool ? ctx.b.getI1Type() : element;
  ScalarInfo info{ctx, element, ctx.info(firstData).isUnsigned};
  // x^2, x^3, x^0.5 with a constant exponent (GELU's x^3, RMSNorm's x^2)
  // become multiplies or a square root instead of a powf call per element.
  if (ctx.node.op_type() == "Pow" && isFloatElement) {
    std::optional<SmallVector<double>> exponent = ctx.constantFloats(1);
    if (exponent && exponent->size() == 1) {
      double e = (*exponent)[0];
      if (e == 1.0 || e == 2.0 || e == 3.0 || e == 0.5) {
        Value result = buildElementwise(
            ctx.b, ctx.loc, ValueRange{inputs[0]}, element,
            [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
              Value x = args[0];
              if (e == 0.5)
                return math::SqrtOp::create(b, loc, x);
              Value r = x;
              for (int k = 1; k < (int)e; ++k)
                r = arith::MulFOp::create(b, loc, r, x);
              return r;
            });
        ctx.setOutput(0, result);
        return success();
      }
    }
  }
  if (tryScalarized(ctx, op, inputs, resultElement, info))
    return success();
  Value result = buildElementwise(
      ctx.b, ctx.loc, inputs, resultElement,
      [&](OpBuilder &b, Location loc, ValueRange args) {
        return op.body(b, loc, args, info);
      });
  ctx.setOutput(0, result, info.isUnsigned && op.result != Result::Bool);
  return success();
}

//===----------------------------------------------------------------------===//
// Ops with their own rules
//===----------------------------------------------------------------------===//

LogicalResult convertClip(NodeContext &ctx) {
  Value x = ctx.input(0);
  Type element = ctx.inputType(0).getElementType();
  bool isUnsigned = ctx.info(0).isUnsigned;
  SmallVector<Value> inputs = {x};
  bool hasMin = ctx.hasInput(1), hasMax = ctx.hasInput(2);
  for (unsigned i : {1u, 2u}) {
    if (!ctx.hasInput(i))
      continue;
    if (ctx.inputType(i).getRank() != 0 &&
        ctx.inputType(i).getNumElements() != 1)
      return ctx.emitError() << "min and max must be scalars, got "
                             << ctx.inputType(i);
    inputs.push_back(ctx.input(i));
  }
  Value result = buildElementwise(
      ctx.b, ctx.loc, inputs, element,
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Value v = args[0];
        unsigned next = 1;
        if (hasMin) {
          Value lo = args[next++];
          v = arith::SelectOp::create(b, loc, cmpLess(b, loc, v, lo, isUnsigned),
                                      lo, v);
        }
        if (hasMax) {
          Value hi = args[next++];
          v = arith::SelectOp::create(b, loc, cmpLess(b, loc, hi, v, isUnsigned),
                                      hi, v);
        }
        return v;
      });
  ctx.setOutput(0, result, isUnsigned);
  return success();
}

LogicalResult convertCastTo(NodeContext &ctx, Type to, bool toUnsigned) {
  Type from = ctx.inputType(0).getElementType();
  bool fromUnsigned = ctx.info(0).isUnsigned;
  if (isa<IntegerType>(to) && isa<IntegerType>(from)) {
    if (std::optional<SmallVector<Value>> elements = ctx.inputElements(0)) {
      SmallVector<Value> cast;
      for (Value e : *elements)
        cast.push_back(castScalar(ctx.b, ctx.loc, e, to, fromUnsigned, toUnsigned));
      ctx.setOutputElements(0, cast, to, ctx.inputType(0).getRank() == 0,
                            toUnsigned);
      return success();
    }
  }
  if (from == to && fromUnsigned == toUnsigned) {
    ctx.setOutput(0, ctx.input(0), toUnsigned);
    return success();
  }
  Value result = buildElementwise(
      ctx.b, ctx.loc, ctx.input(0), to,
      [&](OpBuilder &b, Location loc, ValueRange args) {
        return castScalar(b, loc, args[0], to, fromUnsigned, toUnsigned);
      });
  ctx.setOutput(0, result, toUnsigned);
  return success();
}

LogicalResult convertCast(NodeContext &ctx) {
  int64_t to = ctx.getInt("to", 0);
  if (to == onnx::TensorProto::STRING || ctx.info(0).isString()) {
    FailureOr<Type> toType = to == onnx::TensorProto::STRING
                                 ? FailureOr<Type>(ctx.b.getI8Type())
                                 : getElementType(ctx.b.getContext(), to);
    if (failed(toType))
      return ctx.fail("casting to " + onnxTypeName(to) + " is not supported");
    return convertStringCast(ctx, ctx.info(0), *toType, isUnsignedOnnxType(to),
                             to == onnx::TensorProto::STRING);
  }
  FailureOr<Type> toType = getElementType(ctx.b.getContext(), to);
  if (failed(toType))
    return ctx.fail("casting to " + onnxTypeName(to) + " is not supported");
  return convertCastTo(ctx, *toType, isUnsignedOnnxType(to));
}

LogicalResult convertCastLike(NodeContext &ctx) {
  if (ctx.info(0).isString() || ctx.info(1).isString())
    return convertStringCast(ctx, ctx.info(0), ctx.inputType(1).getElementType(),
                             ctx.info(1).isUnsigned, ctx.info(1).isString());
  return convertCastTo(ctx, ctx.inputType(1).getElementType(),
                       ctx.info(1).isUnsigned);
}

LogicalResult convertIdentity(NodeContext &ctx) {
  const ImportedValue &in = ctx.info(0);
  if (in.isSequence() || in.isOptional() || in.isString()) {
    ctx.setOutputValue(0, in);
  } else if (in.elements) {
    auto type = ctx.inputType(0);
    ctx.setOutputElements(0, *in.elements, type.getElementType(),
                          type.getRank() == 0, in.isUnsigned);
  } else {
    ctx.setOutput(0, in.tensor, in.isUnsigned);
  }
  return success();
}

LogicalResult convertDropout(NodeContext &ctx) {
  // The seed only draws masks, which are never drawn here (a random mask is
  // refused below). Before opset 12 Dropout has no training mode: it is the
  // identity at inference whatever its ratio attribute (and opset 6's
  // is_test) says.
  ctx.ignoreAttr("seed");
  if (ctx.opset < 12) {
    ctx.ignoreAttr("ratio");
    ctx.ignoreAttr("is_test");
  }
  if (ctx.hasInput(2)) {
    std::optional<SmallVector<int64_t>> training = ctx.constantInts(2);
    if (!training || training->empty())
      return ctx.fail("training_mode must be a constant to import Dropout");
    // Training with a ratio of 0 keeps every element (the mask is all
    // true); any other ratio draws a random mask, which is not compiled.
    if ((*training)[0] != 0) {
      std::optional<SmallVector<double>> ratio =
          ctx.hasInput(1) ? ctx.constantFloats(1) : std::optional<SmallVector<double>>();
      if (!ratio || ratio->size() != 1 || (*ratio)[0] != 0.0)
        return ctx.fail("training mode with a ratio other than a constant 0 draws a random mask, "
                        "which is not supported");
    }
  }
  ctx.setOutput(0, ctx.input(0), ctx.info(0).isUnsigned);
  if (ctx.wantsOutput(1)) {
    SmallVector<OpFoldResult> sizes =
        tensor::getMixedSizes(ctx.b, ctx.loc, ctx.input(0));
    Value trueValue = scalarConstant(ctx.b, ctx.loc, ctx.b.getI1Type(), 1);
    ctx.setOutput(1, createFilled(ctx.b, ctx.loc, sizes, trueValue));
  }
  return success();
}

} // namespace

void onnx_import::registerElementwiseConverters(ConverterTable &table) {
  for (const auto &entry : getElementwiseOps())
    table[entry.getKey()] = convertElementwise;
  table["Clip"] = convertClip;
  table["Cast"] = convertCast;
  table["CastLike"] = convertCastLike;
  table["Identity"] = convertIdentity;
  table["Dropout"] = convertDropout;
}
