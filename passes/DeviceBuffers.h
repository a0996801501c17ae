//===- DeviceBuffers.h - which buffers of a CUDA module live on the GPU -*- C++ -*-===//
//
// Shared by hasten-map-parallel-loops-to-gpu and hasten-gpu-device-memory.
// A buffer lives on the device when a kernel reads or writes it, when it
// crosses the entry ABI (an entry's argument or result: the runtime passes
// device buffers), or when it is a constant (the weight segment is
// uploaded); views and the buffers passed along with it (through calls,
// returns and loop-carried values) are the same memory. The rest are the
// host's own bookkeeping, such as the pointer tables of the deallocation
// helper, which stay in host memory and may be read there.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_PASSES_DEVICEBUFFERS_H
#define HASTEN_PASSES_DEVICEBUFFERS_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/DenseSet.h"

namespace hasten {

/// The memref values of `module`'s host functions that are device memory.
llvm::DenseSet<mlir::Value> deviceBuffers(mlir::ModuleOp module);

} // namespace hasten

#endif // HASTEN_PASSES_DEVICEBUFFERS_H
