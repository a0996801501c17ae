//===- GpuGemm.cpp - the CUDA target's matmuls on cuBLASLt -----------------===//
//
// A generated kernel does not compete with cuBLASLt's tensor-core GEMMs, so
// the CUDA target hands each matmul on buffers to the runtime's library
// product (hasten.gpu_gemm), folding into it what the library does for
// free: the zero fill it may overwrite instead of accumulating into, the
// bias add and the ReLU or tanh-GELU after it (cuBLASLt's epilogues), and a
// transposed copy of a weight (a transposed operand). With bf16 or f16
// precision, constant weights are stored narrowed at compile time and other
// operands narrowed by a conversion kernel before the product.
//
//===----------------------------------------------------------------------===//

#include "MatmulOperands.h"
#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/Dominance.h"
#include "mlir/Interfaces/ViewLikeInterface.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>

namespace hasten {
#define GEN_PASS_DEF_GPUGEMM
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

/// The matmuls the library takes: linalg.matmul and batch_matmul with
/// their default maps, on float buffers, outside kernels.
bool isLibraryMatmul(linalg::LinalgOp op) {
  if (op->getParentOfType<gpu::LaunchOp>() || !op.hasPureBufferSemantics())
    return false;
  MLIRContext *ctx = op->getContext();
  bool plain = false;
  if (auto mm = dyn_cast<linalg::MatmulOp>(op.getOperation()))
    plain = mm.getIndexingMapsArray() == linalg::MatmulOp::getDefaultIndexingMaps(ctx);
  if (auto bmm = dyn_cast<linalg::BatchMatmulOp>(op.getOperation()))
    plain = bmm.getIndexingMapsArray() == linalg::BatchMatmulOp::getDefaultIndexingMaps(ctx);
  if (!plain)
    return false;
  auto elementOf = [&](unsigned i) {
    return cast<MemRefType>(op->getOperand(i).getType()).getElementType();
  };
  Type a = elementOf(0), b = elementOf(1), c = elementOf(2);
  auto supported = [](Type t) { return t.isF32() || t.isBF16() || t.isF16(); };
  return supported(a) && a == b && (c.isF32() || c == a);
}

/// Values that are the whole of `buffer` under another shape (views that
/// drop or add nothing), so a bias add on one of them adds to the product.
bool isWholeView(Operation *op) {
  return isa<memref::ExpandShapeOp, memref::CollapseShapeOp, memref::CastOp>(op);
}

/// The scalar function a generic's body computes of its block arguments,
/// evaluated in double at `args`: nullopt when the body reads anything but
/// its arguments and constants, or has an op outside the set elementwise
/// activations are written with (arithmetic, comparisons and selects,
/// tanh/erf/exp and the like, and the polynomial forms --hasten-approximate-math
/// gives them).
std::optional<double> evaluateBody(Block &body, ArrayRef<double> args) {
  llvm::DenseMap<Value, double> values;
  for (auto [arg, value] : llvm::zip(body.getArguments(), args))
    values[arg] = value;
  auto valueOf = [&](Value v) -> std::optional<double> {
    if (auto it = values.find(v); it != values.end())
      return it->second;
    if (auto constant = v.getDefiningOp<arith::ConstantOp>())
      if (auto number = dyn_cast<FloatAttr>(constant.getValue()))
        return number.getValueAsDouble();
    return std::nullopt;
  };
  for (Operation &op : body) {
    if (auto yield = dyn_cast<linalg::YieldOp>(op))
      return yield.getNumOperands() == 1 ? valueOf(yield.getOperand(0)) : std::nullopt;
    if (auto constant = dyn_cast<arith::ConstantOp>(op)) {
      std::optional<double> value = valueOf(constant);
      if (!value)
        return std::nullopt;
      values[constant] = *value;
      continue;
    }
    if (op.getNumResults() != 1)
      return std::nullopt;
    SmallVector<double, 3> x;
    for (Value operand : op.getOperands()) {
      std::optional<double> value = valueOf(operand);
      if (!value)
        return std::nullopt;
      x.push_back(*value);
    }
    std::optional<double> result =
        llvm::TypeSwitch<Operation *, std::optional<double>>(&op)
            .Case([&](arith::AddFOp) { return x[0] + x[1]; })
            .Case([&](arith::SubFOp) { return x[0] - x[1]; })
            .Case([&](arith::MulFOp) { return x[0] * x[1]; })
            .Case([&](arith::DivFOp) { return x[0] / x[1]; })
            .Case([&](arith::NegFOp) { return -x[0]; })
            .Case<arith::MaximumFOp, arith::MaxNumFOp>(
                [&](Operation *) { return std::max(x[0], x[1]); })
            .Case<arith::MinimumFOp, arith::MinNumFOp>(
                [&](Operation *) { return std::min(x[0], x[1]); })
            .Case<arith::ExtFOp, arith::TruncFOp>([&](Operation *) { return x[0]; })
            .Case([&](arith::SelectOp) { return x[0] != 0 ? x[1] : x[2]; })
            .Case([&](arith::CmpFOp cmp) -> std::optional<double> {
              // The samples hold no NaN: ordered and unordered agree.
              switch (cmp.getPredicate()) {
              case arith::CmpFPredicate::OLT:
              case arith::CmpFPredicate::ULT:
                return x[0] < x[1];
              case arith::CmpFPredicate::OLE:
              case arith::CmpFPredicate::ULE:
                return x[0] <= x[1];
              case arith::CmpFPredicate::OGT:
              case arith::CmpFPredicate::UGT:
                return x[0] > x[1];
              case arith::CmpFPredicate::OGE:
              case arith::CmpFPredicate::UGE:
                return x[0] >= x[1];
              case arith::CmpFPredicate::OEQ:
              case arith::CmpFPredicate::UEQ:
                return x[0] == x[1];
              case arith::CmpFPredicate::ONE:
              case arith::CmpFPredicate::UNE:
                return x[0] != x[1];
              default:
                return std::nullopt;
              }
            })
            .Case([&](math::FmaOp) { return x[0] * x[1] + x[2]; })
            .Case([&](math::AbsFOp) { return std::fabs(x[0]); })
            .Case([&](math::TanhOp) { return std::tanh(x[0]); })
            .Case([&](math::ErfOp) { return std::erf(x[0]); })
            .Case([&](math::ExpOp) { return std::exp(x[0]); })
            .Case([&](math::SqrtOp) { return std::sqrt(x[0]); })
            .Case([&](math::PowFOp) { return std::pow(x[0], x[1]); })
            .Default([](Operation *) { return std::nullopt; });
    if (!result)
      return std::nullopt;
    values[op.getResult(0)] = *result;
  }
  return std::nullopt;
}

/// GELU's tanh approximation, which cuBLASLt's GELU epilogue computes.
double geluTanh(double x) {
  return 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

/// What an epilogue generic applies after the product: a bias per column
/// (or none), then an activation (or none).
struct Epilogue {
  Value bias;
  std::optional<StringRef> activation;
};

/// The activation `body` applies to the sum of the product's element
/// (argument `productArg`) and the bias's (`biasArg`, or 0), found
/// by value: the body must agree with one of the activations cuBLASLt has,
/// to 1e-5 of its argument's size (at least 1), at points across [-12, 12]
/// and at +-96. Tanh-GELU's spellings (and the polynomial tanh of
/// --hasten-approximate-math) agree to about 1e-7; erf-GELU is 4e-4 away
/// from it, sigmoid-GELU 2e-2.
/// `nullopt` inside: agreed with the identity; nullopt outside: no match.
std::optional<std::optional<StringRef>> activationOf(Block &body, unsigned productArg,
                                                     std::optional<unsigned> biasArg) {
  struct Candidate {
    std::optional<StringRef> name;
    double (*apply)(double);
  } candidates[] = {{std::nullopt, [](double x) { return x; }},
                    {StringRef("relu"), [](double x) { return std::max(x, 0.0); }},
                    {StringRef("gelu_tanh"), geluTanh}};
  SmallVector<double> biases = biasArg ? SmallVector<double>{0, 0.625, -1.375}
                                       : SmallVector<double>{0};
  for (const Candidate &candidate : candidates) {
    bool agrees = true;
    for (int i = -64; i <= 64 && agrees; ++i) {
      double x = i * 0.1875 + (i % 3) * 0.0123;
      if (i == -64 || i == 64)
        x *= 8; // saturated: ReLU's and GELU's tails
      for (double b : biases) {
        // The output's argument reads as 0 (the body must not read it).
        SmallVector<double, 3> args(body.getNumArguments(), 0.0);
        args[productArg] = x;
        if (biasArg)
          args[*biasArg] = b;
        std::optional<double> value = evaluateBody(body, args);
        double scale = std::max(1.0, std::fabs(x + b));
        agrees = value && std::fabs(*value - candidate.apply(x + b)) <= 1e-5 * scale;
        if (!agrees)
          break;
      }
    }
    if (agrees)
      return candidate.name;
  }
  return std::nullopt;
}

/// `out = act(out + bias[j])` in place on (a reshape of) the product, with
/// the bias one value per column and either of them possibly absent: the
/// generic the importer and elementwise fusion write for a Gemm's C or a
/// MatMul's Add and the activation after it. Returns what it applies.
std::optional<Epilogue> epilogueOf(linalg::GenericOp generic,
                                   const llvm::SmallPtrSetImpl<Value> &product) {
  unsigned inputs = generic.getNumDpsInputs();
  if ((inputs != 1 && inputs != 2) || generic.getNumDpsInits() != 1 ||
      generic.getNumReductionLoops() != 0 || !generic.hasPureBufferSemantics())
    return std::nullopt;
  // The product is the input the generic writes back to, the bias the
  // other one (either order).
  Value out = generic.getDpsInitOperand(0)->get();
  unsigned productArg = generic.getDpsInputOperand(0)->get() == out ? 0 : 1;
  if (productArg >= inputs || !product.contains(out))
    return std::nullopt;
  SmallVector<AffineMap> maps = generic.getIndexingMapsArray();
  unsigned rank = generic.getNumLoops();
  if (!maps[productArg].isIdentity() || !maps.back().isIdentity())
    return std::nullopt;
  Epilogue epilogue;
  std::optional<unsigned> biasArg;
  if (inputs == 2) {
    biasArg = 1 - productArg;
    epilogue.bias = generic.getDpsInputOperand(*biasArg)->get();
    auto biasType = dyn_cast<MemRefType>(epilogue.bias.getType());
    if (!biasType || biasType.getRank() != 1 || epilogue.bias == out ||
        maps[*biasArg] !=
            AffineMap::get(rank, 0, getAffineDimExpr(rank - 1, generic.getContext())))
      return std::nullopt;
  }
  // The body must not read the element it overwrites.
  Block &body = generic.getRegion().front();
  if (!body.getArguments().back().use_empty())
    return std::nullopt;
  std::optional<std::optional<StringRef>> activation =
      activationOf(body, productArg, biasArg);
  if (!activation || (!*activation && inputs == 1))
    return std::nullopt;
  epilogue.activation = *activation;
  return epilogue;
}

/// The epilogue generic that is the next thing to touch `op`'s output
/// (through reshapes only), or null.
linalg::GenericOp epilogueAfter(linalg::LinalgOp op, Epilogue &epilogue) {
  llvm::SmallPtrSet<Value, 4> product;
  product.insert(op.getDpsInits()[0]);
  for (Operation *next = op->getNextNode(); next; next = next->getNextNode()) {
    bool uses = llvm::any_of(next->getOperands(), [&](Value v) { return product.contains(v); });
    if (!uses) {
      // Nothing between may touch memory the product could alias but
      // through a value we track: ops that read or write memory end it.
      if (!isMemoryEffectFree(next) && !isa<memref::DeallocOp, memref::AllocOp>(next) &&
          !isa<ViewLikeOpInterface>(next))
        return nullptr;
      continue;
    }
    if (isWholeView(next)) {
      product.insert(next->getResult(0));
      continue;
    }
    auto generic = dyn_cast<linalg::GenericOp>(next);
    std::optional<Epilogue> found;
    if (!generic || !(found = epilogueOf(generic, product)))
      return nullptr;
    auto outType = cast<MemRefType>(op.getDpsInits()[0].getType());
    if (found->bias &&
        cast<MemRefType>(found->bias.getType()).getElementType() != outType.getElementType())
      return nullptr;
    epilogue = *found;
    return generic;
  }
  return nullptr;
}

/// `value` in `element`: a narrowed copy of the constant weight it views
/// (through one transpose), else a conversion into a new buffer, freed
/// after `user`.
Value narrowed(OpBuilder &b, Value value, FloatType element, Operation *user,
               SymbolTable &symbols) {
  Location loc = value.getLoc();
  auto type = cast<MemRefType>(value.getType());
  if (type.getElementType() == element)
    return value;
  // A constant weight, directly or through memref.transpose.
  Value source = value;
  memref::TransposeOp transpose = source.getDefiningOp<memref::TransposeOp>();
  if (transpose)
    source = transpose.getIn();
  if (auto get = source.getDefiningOp<memref::GetGlobalOp>()) {
    auto global = symbols.lookup<memref::GlobalOp>(get.getName());
    if (global && global.getConstant() && global.getType().getLayout().isIdentity())
      if (memref::GlobalOp copy = hasten::narrowedGlobalFor(global, element, symbols)) {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(get);
        Value narrow = memref::GetGlobalOp::create(b, loc, copy.getType(), copy.getSymName());
        if (transpose) {
          b.setInsertionPoint(transpose);
          narrow = memref::TransposeOp::create(b, loc, narrow, transpose.getPermutationAttr());
        }
        return narrow;
      }
  }
  // Anything else converts on the device: one kernel over its elements.
  SmallVector<Value> sizes;
  for (int64_t i = 0; i < type.getRank(); ++i)
    if (type.isDynamicDim(i))
      sizes.push_back(memref::DimOp::create(b, loc, value, i));
  auto copyType = MemRefType::get(type.getShape(), element);
  Value copy = memref::AllocOp::create(b, loc, copyType, sizes);
  SmallVector<AffineMap> maps(2, b.getMultiDimIdentityMap(type.getRank()));
  SmallVector<utils::IteratorType> iterators(type.getRank(), utils::IteratorType::parallel);
  linalg::GenericOp::create(b, loc, ValueRange{value}, ValueRange{copy}, maps, iterators,
                            [&](OpBuilder &nb, Location nl, ValueRange args) {
                              Value x = args[0];
                              if (x.getType() != element)
                                x = arith::TruncFOp::create(nb, nl, element, x);
                              linalg::YieldOp::create(nb, nl, x);
                            });
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointAfter(user);
  memref::DeallocOp::create(b, loc, copy);
  return copy;
}

struct GpuGemmPass : public hasten::impl::GpuGemmBase<GpuGemmPass> {
  using GpuGemmBase::GpuGemmBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    FloatType narrow;
    if (precision == "bf16")
      narrow = BFloat16Type::get(ctx);
    else if (precision == "f16")
      narrow = Float16Type::get(ctx);
    else if (precision != "f32" && precision != "tf32") {
      module.emitError("--hasten-gpu-gemm: precision must be f32, tf32, bf16 or f16, got '")
          << precision << "'";
      return signalPassFailure();
    }
    SmallVector<linalg::LinalgOp> matmuls;
    module.walk([&](linalg::LinalgOp op) {
      if (isLibraryMatmul(op))
        matmuls.push_back(op);
    });
    SymbolTable symbols(module);
    IRRewriter rewriter(ctx);
    DominanceInfo dominance(module);
    for (linalg::LinalgOp op : matmuls) {
      // A transposed copy of a weight becomes a transposed view of it.
      hasten::viewThroughConstantTranspose(rewriter, op);
      bool accumulate = true;
      if (linalg::FillOp fill = hasten::zeroFillBefore(op)) {
        rewriter.eraseOp(fill);
        accumulate = false;
      }
      // The bias and activation join the product when the bias is there
      // already (a weight).
      Epilogue epilogue;
      linalg::GenericOp epilogueGeneric = epilogueAfter(op, epilogue);
      if (epilogueGeneric && epilogue.bias && !dominance.properlyDominates(epilogue.bias, op)) {
        epilogueGeneric = nullptr;
        epilogue = Epilogue();
      }
      rewriter.setInsertionPoint(op);
      Value lhs = op->getOperand(0), rhs = op->getOperand(1), out = op->getOperand(2);
      Type element = cast<MemRefType>(lhs.getType()).getElementType();
      if (narrow && element.isF32()) {
        lhs = narrowed(rewriter, lhs, narrow, op, symbols);
        rhs = narrowed(rewriter, rhs, narrow, op, symbols);
      }
      hasten::GpuGemmOp::create(
          rewriter, op.getLoc(), /*asyncToken=*/Type(), ValueRange{}, lhs, rhs, epilogue.bias,
          out, accumulate, precision == "tf32" && element.isF32(),
          epilogue.activation ? rewriter.getStringAttr(*epilogue.activation) : StringAttr());
      if (epilogueGeneric)
        rewriter.eraseOp(epilogueGeneric);
      Value wideLhs = op->getOperand(0), wideRhs = op->getOperand(1);
      rewriter.eraseOp(op);
      // The f32 weights a narrowed copy replaced, when nothing else reads
      // them: the module stores only the copy.
      for (Value replaced : {wideLhs, wideRhs})
        eraseUnusedWeight(rewriter, replaced, symbols);
    }
  }

  void eraseUnusedWeight(IRRewriter &rewriter, Value value, SymbolTable &symbols) {
    Operation *def = value.getDefiningOp();
    if (!def || !value.use_empty() || !isa<memref::TransposeOp, memref::GetGlobalOp>(def))
      return;
    Value source = isa<memref::TransposeOp>(def) ? def->getOperand(0) : Value();
    auto get = dyn_cast<memref::GetGlobalOp>(def);
    rewriter.eraseOp(def);
    if (source)
      return eraseUnusedWeight(rewriter, source, symbols);
    auto global = symbols.lookup<memref::GlobalOp>(get.getName());
    if (global && SymbolTable::symbolKnownUseEmpty(global, getOperation()))
      symbols.erase(global);
  }
};

} // namespace
