//===- GpuGemmToLLVM.cpp - hasten.gpu_gemm as a call of the runtime --------===//
//
// gpu-to-llvm lowers the gpu dialect's host ops to calls of the GPU runtime
// ABI, each on the stream its async token became; hasten.gpu_gemm joins
// that conversion through the dialect's ConvertToLLVMPatternInterface
// (gpu-to-llvm collects the patterns of every dialect that has one), so
// that it lands on the same stream as the kernels around it. It becomes
// one call of hasten_cuda_gemm (runtime/CudaBlas.cpp): the stream, the
// types and flags (include/hasten/KernelAbi.h), the batch and matrix sizes,
// and each matrix as its first element's address and its strides.
//
//===----------------------------------------------------------------------===//

#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/KernelAbi.h"
#include "hasten/Passes/Passes.h"

#include "mlir/Conversion/ConvertToLLVM/ToLLVMInterface.h"
#include "mlir/Conversion/LLVMCommon/MemRefBuilder.h"
#include "mlir/Conversion/LLVMCommon/Pattern.h"
#include "mlir/Dialect/LLVMIR/FunctionCallUtils.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/DialectRegistry.h"

using namespace mlir;

namespace {

int32_t typeCode(Type element) {
  return element.isBF16() ? hasten::abi::kGemmBf16
         : element.isF16() ? hasten::abi::kGemmF16
                           : hasten::abi::kGemmF32;
}

struct GpuGemmToRuntimeCall : public ConvertOpToLLVMPattern<hasten::GpuGemmOp> {
  using ConvertOpToLLVMPattern::ConvertOpToLLVMPattern;

  LogicalResult matchAndRewrite(hasten::GpuGemmOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    if (adaptor.getAsyncDependencies().size() > 1)
      return rewriter.notifyMatchFailure(op, "one stream to queue on: at most one dependency");
    Location loc = op.getLoc();
    MLIRContext *ctx = op.getContext();
    Type i32 = IntegerType::get(ctx, 32), i64 = IntegerType::get(ctx, 64);
    Type ptr = LLVM::LLVMPointerType::get(ctx);
    auto module = op->getParentOfType<ModuleOp>();
    auto runtimeCall = [&](StringRef name, ValueRange args, Type result) -> FailureOr<Value> {
      SmallVector<Type> params;
      for (Value arg : args)
        params.push_back(arg.getType());
      FailureOr<LLVM::LLVMFuncOp> callee =
          LLVM::lookupOrCreateFn(rewriter, module, name, params, result);
      if (failed(callee))
        return failure();
      auto call = LLVM::CallOp::create(rewriter, loc, *callee, args);
      return call.getNumResults() ? call.getResult() : Value();
    };
    // Without a token (gpu-async-region did not run) the product is
    // synchronous, as a gpu op without one is: its own stream, waited for.
    bool sync = adaptor.getAsyncDependencies().empty();
    Value stream;
    if (sync) {
      FailureOr<Value> created = runtimeCall("mgpuStreamCreate", {}, ptr);
      if (failed(created))
        return failure();
      stream = *created;
    } else {
      stream = adaptor.getAsyncDependencies().front();
    }
    auto constant = [&](Type type, int64_t value) -> Value {
      return LLVM::ConstantOp::create(rewriter, loc, type, rewriter.getIntegerAttr(type, value));
    };
    auto outType = cast<MemRefType>(op.getOut().getType());
    int64_t rank = outType.getRank();
    bool batched = rank == 3;

    SmallVector<Value> args{stream};
    int32_t flags =
        typeCode(cast<MemRefType>(op.getLhs().getType()).getElementType())
            << hasten::abi::kGemmOperandTypeShift |
        typeCode(outType.getElementType()) << hasten::abi::kGemmResultTypeShift;
    if (op.getAccumulate())
      flags |= hasten::abi::kGemmAccumulate;
    if (op.getTf32())
      flags |= hasten::abi::kGemmTf32;
    if (op.getBias())
      flags |= hasten::abi::kGemmBias;
    if (op.getActivation() == "relu")
      flags |= hasten::abi::kGemmRelu;
    if (op.getActivation() == "gelu_tanh")
      flags |= hasten::abi::kGemmGeluTanh;
    args.push_back(constant(i32, flags));

    MemRefDescriptor lhs(adaptor.getLhs()), out(adaptor.getOut());
    args.push_back(batched ? out.size(rewriter, loc, 0) : constant(i64, 1));
    args.push_back(out.size(rewriter, loc, rank - 2));
    args.push_back(out.size(rewriter, loc, rank - 1));
    args.push_back(lhs.size(rewriter, loc, rank - 1));
    // A matrix: its first element, and its batch, row and column strides
    // (a batch of one broadcasts: stride 0).
    auto matrix = [&](Value original, Value converted) {
      MemRefDescriptor desc(converted);
      auto type = cast<MemRefType>(original.getType());
      args.push_back(desc.bufferPtr(rewriter, loc, *getTypeConverter(), type));
      if (batched) {
        Value one = constant(i64, 1);
        Value single = LLVM::ICmpOp::create(rewriter, loc, LLVM::ICmpPredicate::eq,
                                            desc.size(rewriter, loc, 0), one);
        args.push_back(LLVM::SelectOp::create(rewriter, loc, single, constant(i64, 0),
                                              desc.stride(rewriter, loc, 0)));
      } else {
        args.push_back(constant(i64, 0));
      }
      args.push_back(desc.stride(rewriter, loc, rank - 2));
      args.push_back(desc.stride(rewriter, loc, rank - 1));
    };
    matrix(op.getLhs(), adaptor.getLhs());
    matrix(op.getRhs(), adaptor.getRhs());
    if (Value bias = adaptor.getBias())
      args.push_back(MemRefDescriptor(bias).bufferPtr(
          rewriter, loc, *getTypeConverter(), cast<MemRefType>(op.getBias().getType())));
    else
      args.push_back(LLVM::ZeroOp::create(rewriter, loc, ptr));
    matrix(op.getOut(), adaptor.getOut());

    Type none = LLVM::LLVMVoidType::get(ctx);
    if (failed(runtimeCall("hasten_cuda_gemm", args, none)))
      return failure();
    if (sync) {
      if (failed(runtimeCall("mgpuStreamSynchronize", stream, none)) ||
          failed(runtimeCall("mgpuStreamDestroy", stream, none)))
        return failure();
    }
    // As gpu-to-llvm does for its ops: the stream is the token that follows.
    if (op.getAsyncToken())
      rewriter.replaceOp(op, stream);
    else
      rewriter.eraseOp(op);
    return success();
  }
};

struct HastenToLLVMInterface : public ConvertToLLVMPatternInterface {
  using ConvertToLLVMPatternInterface::ConvertToLLVMPatternInterface;
  void populateConvertToLLVMConversionPatterns(ConversionTarget &target,
                                               LLVMTypeConverter &converter,
                                               RewritePatternSet &patterns) const override {
    target.addIllegalOp<hasten::GpuGemmOp>();
    patterns.add<GpuGemmToRuntimeCall>(converter);
  }
};

} // namespace

void hasten::registerGpuGemmToLLVM(DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *, hasten::HastenDialect *dialect) {
    dialect->addInterfaces<HastenToLLVMInterface>();
  });
}
