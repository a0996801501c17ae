//===- GpuDeviceMemory.cpp - a CUDA module's buffers on the device --------===//
//
// The runtime hands a CUDA module's entries device buffers and reads their
// results from the device; kernels are the only code that touches device
// buffer contents. Allocations of device buffers therefore become device
// allocations. A host load from a small device buffer of static shape (a
// scale that a kernel computed, say) reads a copy: the buffer is copied to
// a host stack buffer first (gpu-async-region then waits for the copy
// before the load). Any other host operation left that would read or write
// a device buffer is an error here, at compile time, rather than a fault on
// the host at run time. Buffers no kernel sees stay host memory.
//
//===----------------------------------------------------------------------===//

#include "hasten/Passes/Passes.h"

#include "DeviceBuffers.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

namespace hasten {
#define GEN_PASS_DEF_GPUDEVICEMEMORY
#include "hasten/Passes/Passes.h.inc"
} // namespace hasten

using namespace mlir;

namespace {

bool isMemRef(Value value) { return isa<BaseMemRefType>(value.getType()); }

/// Whether a host op reads or writes the contents of a device buffer (as
/// opposed to allocating, viewing or passing it).
bool touchesDevice(Operation *op, const llvm::DenseSet<Value> &device) {
  auto isDevice = [&](Value value) { return isMemRef(value) && device.contains(value); };
  if (isa<gpu::LaunchOp, gpu::AllocOp, gpu::DeallocOp, gpu::MemcpyOp, gpu::MemsetOp,
          memref::AllocOp, memref::DeallocOp, memref::GetGlobalOp, func::ReturnOp>(op))
    return false;
  // Device work queued from the host (hasten.gpu_gemm: a library call on
  // the stream) touches device memory on the device.
  if (isa<gpu::AsyncOpInterface>(op))
    return false;
  if (auto call = dyn_cast<func::CallOp>(op)) {
    // A call of a host function of this module is checked where that
    // function is; a declaration is the runtime's CPU code.
    auto callee = SymbolTable::lookupNearestSymbolFrom<func::FuncOp>(op, call.getCalleeAttr());
    return (!callee || callee.isExternal()) && llvm::any_of(op->getOperands(), isDevice);
  }
  auto effects = dyn_cast<MemoryEffectOpInterface>(op);
  if (!effects)
    // Unknown effects: an op that only forwards buffers (a terminator, a
    // view) is fine, any other with device buffer operands might read them.
    return op->getNumRegions() == 0 && !op->hasTrait<OpTrait::IsTerminator>() &&
           !isa<ViewLikeOpInterface>(op) && llvm::any_of(op->getOperands(), isDevice);
  SmallVector<MemoryEffects::EffectInstance> list;
  effects.getEffects(list);
  return llvm::any_of(list, [&](const MemoryEffects::EffectInstance &effect) {
    return (isa<MemoryEffects::Read, MemoryEffects::Write>(effect.getEffect())) &&
           effect.getValue() && isDevice(effect.getValue());
  });
}

/// Largest device buffer a host load reads through a copy.
constexpr int64_t kReadBackBytes = 4096;

/// Whether the host may read `buffer` through a copy of the whole of it.
bool readableThroughCopy(Value buffer) {
  auto type = dyn_cast<MemRefType>(buffer.getType());
  if (!type || !type.hasStaticShape() || !type.getLayout().isIdentity() ||
      !type.getElementType().isIntOrFloat())
    return false;
  int64_t bytes = type.getNumElements() * type.getElementTypeBitWidth() / 8;
  return bytes <= kReadBackBytes;
}

struct GpuDeviceMemoryPass
    : public hasten::impl::GpuDeviceMemoryBase<GpuDeviceMemoryPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    llvm::DenseSet<Value> device = hasten::deviceBuffers(module);
    bool failed = false;
    for (auto func : module.getOps<func::FuncOp>()) {
      if (func.isExternal())
        continue;
      // The runtime passes an entry's scalars in host memory.
      if (func.isPublic())
        for (BlockArgument argument : func.getArguments())
          if (auto type = dyn_cast<MemRefType>(argument.getType());
              type && type.getRank() == 0 && device.contains(argument)) {
            func.emitError("entry input #")
                << argument.getArgNumber() << " (" << type
                << ") is a scalar, which a CUDA entry reads from host memory, but device "
                   "code uses it as a buffer";
            failed = true;
          }
      // Host loads of small device buffers read a copy.
      SmallVector<memref::LoadOp> readBacks;
      func.walk<WalkOrder::PreOrder>([&](Operation *op) {
        if (isa<gpu::LaunchOp>(op))
          return WalkResult::skip();
        if (auto load = dyn_cast<memref::LoadOp>(op);
            load && device.contains(load.getMemRef()) && readableThroughCopy(load.getMemRef()))
          readBacks.push_back(load);
        return WalkResult::advance();
      });
      for (memref::LoadOp load : readBacks) {
        OpBuilder b(load);
        auto type = cast<MemRefType>(load.getMemRef().getType());
        Value copy = memref::AllocaOp::create(b, load.getLoc(), type);
        gpu::MemcpyOp::create(b, load.getLoc(), /*asyncToken=*/Type(), ValueRange(), copy,
                              load.getMemRef());
        load->setOperand(0, copy);
      }
      func.walk<WalkOrder::PreOrder>([&](Operation *op) {
        if (isa<gpu::LaunchOp>(op))
          return WalkResult::skip();
        if (touchesDevice(op, device)) {
          op->emitError("runs on the host and reads or writes a buffer, which the CUDA target "
                        "keeps in device memory; this is not supported on CUDA yet");
          failed = true;
        }
        return WalkResult::advance();
      });
      if (failed)
        continue;
      // The device buffers' allocations and frees (the host's own stay),
      // chosen before any is rewritten.
      SmallVector<Operation *> allocations;
      func.walk<WalkOrder::PreOrder>([&](Operation *op) {
        if (isa<gpu::LaunchOp>(op))
          return WalkResult::skip();
        if (isa<memref::AllocOp, memref::DeallocOp, memref::AllocaOp>(op) &&
            device.contains(op->getNumResults() ? op->getResult(0) : op->getOperand(0)))
          allocations.push_back(op);
        return WalkResult::advance();
      });
      for (Operation *op : allocations) {
        OpBuilder b(op);
        if (auto alloc = dyn_cast<memref::AllocOp>(op)) {
          auto onDevice = gpu::AllocOp::create(b, alloc.getLoc(), alloc.getType(),
                                               /*asyncToken=*/Type(), ValueRange(),
                                               alloc.getDynamicSizes(),
                                               alloc.getSymbolOperands(), /*hostShared=*/false);
          alloc.replaceAllUsesWith(onDevice.getMemref());
          // The set holds values by address: an erased allocation's result
          // left in it would make whatever the allocator puts at that address
          // next (a later function's read-back copy, say) a device buffer.
          device.erase(alloc.getResult());
          device.insert(onDevice.getMemref());
          alloc.erase();
        } else if (auto dealloc = dyn_cast<memref::DeallocOp>(op)) {
          gpu::DeallocOp::create(b, dealloc.getLoc(), /*asyncToken=*/Type(), ValueRange(),
                                 dealloc.getMemref());
          dealloc.erase();
        } else {
          // A stack buffer a kernel could read does not exist on the device.
          op->emitError("a host stack buffer used by a kernel: not supported on CUDA");
          failed = true;
        }
      }
    }
    if (failed)
      signalPassFailure();
  }
};

} // namespace
