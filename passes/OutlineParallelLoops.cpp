//===- OutlineParallelLoops.cpp - parallel loops on the runtime's pool -----===//
//
// The runtime owns one OpenMP (libgomp) thread pool, shared with oneDNN. To
// run a generated loop on it, the loop body becomes a function of an
// iteration range and an opaque context pointer, which is the shape of call
// an OpenMP runtime can make from any thread.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "mlir/Conversion/LLVMCommon/MemRefBuilder.h"
#include "mlir/Conversion/LLVMCommon/TypeConverter.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/Transforms/RegionUtils.h"

namespace hasten {
#define GEN_PASS_DEF_OUTLINEPARALLELLOOPS
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

constexpr const char *kParallelFor = "hasten_rt_parallel_for";

/// The static trip count of a loop dimension, if its bounds are constants.
std::optional<int64_t> staticTrips(Value lower, Value upper, Value step) {
  std::optional<int64_t> lb = getConstantIntValue(lower), ub = getConstantIntValue(upper),
                         st = getConstantIntValue(step);
  if (!lb || !ub || !st || *st <= 0)
    return std::nullopt;
  return std::max<int64_t>(0, (*ub - *lb + *st - 1) / *st);
}

/// The dimension to split across threads: the first one not known to run
/// once (a batch dimension of 1 outermost would leave one iteration to
/// share).
unsigned splitDimension(scf::ParallelOp loop) {
  for (unsigned d = 0; d + 1 < loop.getNumLoops(); ++d) {
    std::optional<int64_t> trips =
        staticTrips(loop.getLowerBound()[d], loop.getUpperBound()[d], loop.getStep()[d]);
    if (!trips || *trips != 1)
      return d;
  }
  return loop.getNumLoops() - 1;
}

/// A sequential loop whose trip count is only known at run time counts as
/// this many iterations: it is rarely shorter (a sequence, a tile loop),
/// and counting it as one left tiled attention's query blocks, each a loop
/// over key tiles, on one thread.
constexpr int64_t kDynamicTrips = 64;

/// Iterations of the sequential loops nested in the body (static counts,
/// or kDynamicTrips), as a multiplier of the parallel work.
int64_t nestedWork(scf::ParallelOp loop) {
  int64_t most = 1;
  loop.getBody()->walk([&](scf::ForOp inner) {
    int64_t product = 1;
    for (Operation *op = inner; op && op != loop.getOperation(); op = op->getParentOp())
      if (auto f = dyn_cast<scf::ForOp>(op)) {
        std::optional<int64_t> trips =
            staticTrips(f.getLowerBound(), f.getUpperBound(), f.getStep());
        product = std::min<int64_t>(product * (trips ? std::max<int64_t>(1, *trips)
                                                     : kDynamicTrips),
                                    int64_t(1) << 40);
      }
    most = std::max(most, product);
  });
  return most;
}

/// How a captured value travels in the context. A memref with a strided
/// layout carries its aligned pointer and only the sizes, strides and
/// offset its type leaves dynamic; the body rebuilds the descriptor from the
/// type. Whole descriptors (a 2-D one is seven words) made a 124M decoder's
/// entries mostly stores into contexts: 65,000 instructions for 1,256 loops,
/// which code generation spent a second on. Anything else travels whole.
struct Capture {
  Value value;
  MemRefType memref; // null when the value travels whole
  SmallVector<int64_t> strides;
  int64_t offset = 0;
  unsigned firstField = 0;

  static Capture of(Value v) {
    Capture c{v, nullptr, {}, 0, 0};
    auto type = dyn_cast<MemRefType>(v.getType());
    if (type && succeeded(type.getStridesAndOffset(c.strides, c.offset)))
      c.memref = type;
    return c;
  }

  /// The context's field types for this value.
  void addFields(const LLVMTypeConverter &converter, SmallVector<Type> &fields) {
    firstField = fields.size();
    if (!memref) {
      fields.push_back(converter.convertType(value.getType()));
      return;
    }
    Type word = converter.getIndexType();
    // The descriptor's own pointer type (its address space).
    fields.push_back(cast<LLVM::LLVMStructType>(converter.convertType(memref)).getBody()[1]);
    for (int64_t size : memref.getShape())
      if (ShapedType::isDynamic(size))
        fields.push_back(word);
    for (int64_t stride : strides)
      if (ShapedType::isDynamic(stride))
        fields.push_back(word);
    if (ShapedType::isDynamic(offset))
      fields.push_back(word);
  }

  /// The values to store, at the call site.
  SmallVector<Value> pack(OpBuilder &b, Location loc, const LLVMTypeConverter &converter) {
    Value whole = UnrealizedConversionCastOp::create(b, loc, converter.convertType(value.getType()),
                                                     value)
                      .getResult(0);
    if (!memref)
      return {whole};
    MemRefDescriptor d(whole);
    SmallVector<Value> out = {d.alignedPtr(b, loc)};
    for (auto [i, size] : llvm::enumerate(memref.getShape()))
      if (ShapedType::isDynamic(size))
        out.push_back(d.size(b, loc, i));
    for (auto [i, stride] : llvm::enumerate(strides))
      if (ShapedType::isDynamic(stride))
        out.push_back(d.stride(b, loc, i));
    if (ShapedType::isDynamic(offset))
      out.push_back(d.offset(b, loc));
    return out;
  }

  /// The value again, in the body, from its loaded fields.
  Value unpack(OpBuilder &b, Location loc, const LLVMTypeConverter &converter,
               ArrayRef<Value> loaded) {
    Type whole = converter.convertType(value.getType());
    Value result = loaded.front();
    if (memref) {
      auto d = MemRefDescriptor::poison(b, loc, whole);
      d.setAllocatedPtr(b, loc, loaded[0]); // the body never frees it
      d.setAlignedPtr(b, loc, loaded[0]);
      unsigned next = 1;
      for (auto [i, size] : llvm::enumerate(memref.getShape())) {
        if (ShapedType::isDynamic(size))
          d.setSize(b, loc, i, loaded[next++]);
        else
          d.setConstantSize(b, loc, i, size);
      }
      for (auto [i, stride] : llvm::enumerate(strides)) {
        if (ShapedType::isDynamic(stride))
          d.setStride(b, loc, i, loaded[next++]);
        else
          d.setConstantStride(b, loc, i, stride);
      }
      if (ShapedType::isDynamic(offset))
        d.setOffset(b, loc, loaded[next]);
      else
        d.setConstantOffset(b, loc, offset);
      result = d;
    }
    return UnrealizedConversionCastOp::create(b, loc, value.getType(), result).getResult(0);
  }
};

/// The outlined body in `bodies` equivalent to `body` (the same ops,
/// attributes and types; locations aside), or null after recording `body`.
func::FuncOp findEquivalent(llvm::DenseMap<llvm::hash_code, SmallVector<func::FuncOp>> &bodies,
                            func::FuncOp body) {
  llvm::hash_code hash = llvm::hash_value(body.getFunctionType().getAsOpaquePointer());
  body.getBody().walk([&](Operation *op) { // not the function: its name differs
    hash = llvm::hash_combine(
        hash, OperationEquivalence::computeHash(op, OperationEquivalence::ignoreHashValue,
                                                OperationEquivalence::ignoreHashValue,
                                                OperationEquivalence::IgnoreLocations));
  });
  SmallVector<func::FuncOp> &candidates = bodies[hash];
  for (func::FuncOp candidate : candidates)
    if (OperationEquivalence::isRegionEquivalentTo(&candidate.getBody(), &body.getBody(),
                                                   OperationEquivalence::IgnoreLocations))
      return candidate;
  candidates.push_back(body);
  return nullptr;
}

struct OutlineParallelLoopsPass
    : public hasten::impl::OutlineParallelLoopsBase<OutlineParallelLoopsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    SmallVector<scf::ParallelOp> loops;
    module.walk([&](scf::ParallelOp op) {
      if (!op->getParentOfType<scf::ParallelOp>() && op.getNumReductions() == 0)
        loops.push_back(op);
    });
    if (loops.empty())
      return;

    LLVMTypeConverter converter(ctx);
    auto ptrType = LLVM::LLVMPointerType::get(ctx);
    Type indexType = IndexType::get(ctx);
    auto bodyType = FunctionType::get(ctx, {indexType, indexType, ptrType}, {});
    OpBuilder moduleBuilder = OpBuilder::atBlockEnd(module.getBody());
    func::FuncOp parallelFor = module.lookupSymbol<func::FuncOp>(kParallelFor);
    if (!parallelFor) {
      parallelFor = func::FuncOp::create(
          moduleBuilder, module.getLoc(), kParallelFor,
          FunctionType::get(ctx, {indexType, indexType, bodyType, ptrType}, {}));
      parallelFor.setPrivate();
    }

    int counter = 0;
    llvm::DenseMap<llvm::hash_code, SmallVector<func::FuncOp>> bodies;
    for (scf::ParallelOp loop : loops) {
      Location loc = loop.getLoc();
      // Values from outside the loop: constants are cloned, the rest packed.
      SetVector<Value> above;
      getUsedValuesDefinedAbove(loop.getRegion(), above);
      for (Value v : loop.getOperands())
        above.insert(v);
      SmallVector<Value> captured;
      SmallVector<Operation *> constants;
      for (Value v : above) {
        Operation *def = v.getDefiningOp();
        if (def && def->hasTrait<OpTrait::ConstantLike>())
          constants.push_back(def);
        else
          captured.push_back(v);
      }
      SmallVector<Type> fieldTypes;
      SmallVector<Capture> captures;
      for (Value v : captured) {
        if (!converter.convertType(v.getType())) {
          loop.emitError("cannot pass a value of type ") << v.getType()
                                                         << " to a parallel loop body";
          return signalPassFailure();
        }
        captures.push_back(Capture::of(v));
        captures.back().addFields(converter, fieldTypes);
      }
      auto structType = LLVM::LLVMStructType::getLiteral(ctx, fieldTypes);

      // The body: iterations [begin, end) of dimension 0.
      std::string name = "__hasten_parallel_" + std::to_string(counter++);
      auto body = func::FuncOp::create(moduleBuilder, loc, name, bodyType);
      body.setPrivate();
      Block *entry = body.addEntryBlock();
      OpBuilder b = OpBuilder::atBlockBegin(entry);
      IRMapping mapping;
      for (Operation *c : constants)
        b.clone(*c, mapping);
      Value ctxArg = entry->getArgument(2);
      for (auto [i, capture] : llvm::enumerate(captures)) {
        unsigned end = i + 1 < captures.size() ? captures[i + 1].firstField : fieldTypes.size();
        SmallVector<Value> loaded;
        for (unsigned f = capture.firstField; f < end; ++f) {
          Value field = LLVM::GEPOp::create(b, loc, ptrType, structType, ctxArg,
                                            ArrayRef<LLVM::GEPArg>{0, (int32_t)f});
          loaded.push_back(LLVM::LoadOp::create(b, loc, fieldTypes[f], field));
        }
        mapping.map(capture.value, capture.unpack(b, loc, converter, loaded));
      }
      // Dimensions before the split one run once: their induction variables
      // are their lower bounds.
      unsigned split = splitDimension(loop);
      for (unsigned d = 0; d < split; ++d)
        mapping.map(loop.getInductionVars()[d],
                    mapping.lookupOrDefault(loop.getLowerBound()[d]));
      Value lbSplit = mapping.lookupOrDefault(loop.getLowerBound()[split]);
      Value stepSplit = mapping.lookupOrDefault(loop.getStep()[split]);
      Value one = arith::ConstantIndexOp::create(b, loc, 1);
      auto outer = scf::ForOp::create(b, loc, entry->getArgument(0), entry->getArgument(1), one);
      {
        OpBuilder ib = OpBuilder::atBlockBegin(outer.getBody());
        Value iv = arith::AddIOp::create(
            ib, loc, lbSplit, arith::MulIOp::create(ib, loc, outer.getInductionVar(), stepSplit));
        mapping.map(loop.getInductionVars()[split], iv);
        if (split + 1 == loop.getNumLoops()) {
          for (Operation &op : loop.getBody()->without_terminator())
            ib.clone(op, mapping);
        } else {
          auto rest = [&](OperandRange r) {
            SmallVector<Value> out;
            for (Value v : r.drop_front(split + 1))
              out.push_back(mapping.lookupOrDefault(v));
            return out;
          };
          auto inner = scf::ParallelOp::create(ib, loc, rest(loop.getLowerBound()),
                                               rest(loop.getUpperBound()),
                                               rest(loop.getStep()));
          SmallVector<Value> outerIvs = loop.getInductionVars();
          SmallVector<Value> innerIvs = inner.getInductionVars();
          for (auto [from, to] :
               llvm::zip(ArrayRef<Value>(outerIvs).drop_front(split + 1), innerIvs))
            mapping.map(from, to);
          OpBuilder nb = OpBuilder::atBlockBegin(inner.getBody());
          for (Operation &op : loop.getBody()->without_terminator())
            nb.clone(op, mapping);
        }
      }
      func::ReturnOp::create(b, loc);
      // A body identical to an earlier one (the same loop in every layer of
      // a model: weights arrive through the context) is that one: the code
      // generator then handles each distinct loop once, not once per layer.
      if (func::FuncOp same = findEquivalent(bodies, body)) {
        body.erase();
        name = same.getSymName().str();
      }

      // The call site: pack the captures and hand the loop to the runtime.
      OpBuilder cb(loop);
      Value count = arith::ConstantIntOp::create(cb, loc, cb.getI64Type(), 1);
      Value ctxPtr = LLVM::AllocaOp::create(cb, loc, ptrType, structType, count);
      for (Capture &capture : captures)
        for (auto [i, value] : llvm::enumerate(capture.pack(cb, loc, converter))) {
          Value field =
              LLVM::GEPOp::create(cb, loc, ptrType, structType, ctxPtr,
                                  ArrayRef<LLVM::GEPArg>{0, int32_t(capture.firstField + i)});
          LLVM::StoreOp::create(cb, loc, value, field);
        }
      auto tripsOf = [&](unsigned d) -> Value {
        return arith::CeilDivSIOp::create(
            cb, loc,
            arith::SubIOp::create(cb, loc, loop.getUpperBound()[d], loop.getLowerBound()[d]),
            loop.getStep()[d]);
      };
      Value trips = tripsOf(split);
      // Work: all parallel iterations times the static sequential ones
      // inside (a reduction over a row counts its row).
      Value work = trips;
      for (unsigned d = 0; d < loop.getNumLoops(); ++d)
        if (d != split)
          work = arith::MulIOp::create(cb, loc, work, tripsOf(d));
      if (int64_t inner = nestedWork(loop); inner > 1)
        work = arith::MulIOp::create(cb, loc, work,
                                     arith::ConstantIndexOp::create(cb, loc, inner));
      // Below min-work the runtime runs the loop on the calling thread.
      Value threshold = arith::ConstantIndexOp::create(cb, loc, minWork);
      Value small = arith::CmpIOp::create(cb, loc, arith::CmpIPredicate::slt, work, threshold);
      Value zero = arith::ConstantIndexOp::create(cb, loc, 0);
      Value workArg = arith::SelectOp::create(cb, loc, small, zero, work);
      Value fn = func::ConstantOp::create(cb, loc, bodyType,
                                          FlatSymbolRefAttr::get(ctx, name));
      func::CallOp::create(cb, loc, parallelFor, ValueRange{trips, workArg, fn, ctxPtr});
      loop.erase();
    }
  }
};
} // namespace
