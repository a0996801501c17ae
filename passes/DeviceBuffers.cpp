//===- DeviceBuffers.cpp - which buffers of a CUDA module live on the GPU -===//

#include "DeviceBuffers.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

#include <functional>

using namespace mlir;

namespace {
bool isMemRef(Value value) { return isa<BaseMemRefType>(value.getType()); }
} // namespace

llvm::DenseSet<Value> hasten::deviceBuffers(ModuleOp module) {
  // Values that are the same memory, as classes (union-find); then the
  // classes with a device member.
  llvm::DenseMap<Value, Value> parent;
  std::function<Value(Value)> find = [&](Value v) -> Value {
    auto it = parent.find(v);
    if (it == parent.end() || it->second == v)
      return v;
    Value root = find(it->second);
    parent[v] = root;
    return root;
  };
  llvm::DenseSet<Value> seeds;
  auto join = [&](Value a, Value b) {
    if (!isMemRef(a) || !isMemRef(b))
      return;
    parent.try_emplace(a, a);
    parent.try_emplace(b, b);
    Value ra = find(a), rb = find(b);
    if (ra != rb)
      parent[ra] = rb;
  };
  SymbolTable symbols(module);
  for (auto func : module.getOps<func::FuncOp>()) {
    if (func.isExternal())
      continue;
    // An entry's arguments are device buffers, but for its scalars (rank 0),
    // which the runtime passes in host memory (hasten-gpu-host-scalars).
    if (func.isPublic())
      for (Value argument : func.getArguments())
        if (isMemRef(argument) && cast<BaseMemRefType>(argument.getType()).getRank() != 0)
          seeds.insert(argument);
    func.walk<WalkOrder::PreOrder>([&](Operation *op) {
      if (auto launch = dyn_cast<gpu::LaunchOp>(op)) {
        // Every buffer a kernel captures from the host.
        launch.getBody().walk([&](Operation *inner) {
          for (Value operand : inner->getOperands())
            if (isMemRef(operand) && !launch->isAncestor(operand.getParentRegion()->getParentOp()))
              seeds.insert(operand);
        });
        return WalkResult::skip();
      }
      if (isa<memref::GetGlobalOp>(op))
        seeds.insert(op->getResult(0));
      // A library product on the GPU (hasten.gpu_gemm) reads and writes
      // its buffers on the device, like a kernel.
      if (isa<gpu::AsyncOpInterface>(op) && !isa<gpu::GPUDialect>(op->getDialect()))
        for (Value operand : op->getOperands())
          if (isMemRef(operand))
            seeds.insert(operand);
      if (auto view = dyn_cast<ViewLikeOpInterface>(op))
        join(view.getViewSource(), op->getResult(0));
      else if (isa<memref::CastOp, memref::ReinterpretCastOp, memref::ExpandShapeOp,
                   memref::CollapseShapeOp>(op))
        join(op->getOperand(0), op->getResult(0));
      if (auto ret = dyn_cast<func::ReturnOp>(op)) {
        for (Value value : ret.getOperands())
          if (isMemRef(value) && func.isPublic())
            seeds.insert(value);
      }
      if (auto call = dyn_cast<func::CallOp>(op)) {
        auto callee = symbols.lookup<func::FuncOp>(call.getCallee());
        if (callee && !callee.isExternal()) {
          for (auto [operand, argument] : llvm::zip(call.getOperands(), callee.getArguments()))
            join(operand, argument);
          callee.walk([&](func::ReturnOp ret) {
            for (auto [result, returned] : llvm::zip(call.getResults(), ret.getOperands()))
              join(result, returned);
          });
        }
      }
      if (auto loop = dyn_cast<scf::ForOp>(op)) {
        auto yield = cast<scf::YieldOp>(loop.getBody()->getTerminator());
        for (auto [init, carried, result, yielded] :
             llvm::zip(loop.getInitArgs(), loop.getRegionIterArgs(), loop.getResults(),
                       yield.getOperands())) {
          join(init, carried);
          join(carried, result);
          join(result, yielded);
        }
      }
      if (auto branch = dyn_cast<scf::IfOp>(op)) {
        for (Region *region : {&branch.getThenRegion(), &branch.getElseRegion()})
          if (!region->empty())
            for (auto [result, yielded] :
                 llvm::zip(branch.getResults(),
                           cast<scf::YieldOp>(region->front().getTerminator()).getOperands()))
              join(result, yielded);
      }
      return WalkResult::advance();
    });
  }
  llvm::DenseSet<Value> roots, device;
  for (Value seed : seeds)
    roots.insert(find(seed));
  // Every value that was joined with anything, and every seed.
  for (auto &[value, up] : parent)
    if (roots.contains(find(value)))
      device.insert(value);
  for (Value seed : seeds)
    device.insert(seed);
  return device;
}
