//===- MemoryReport.h - the memory plan of a compiled model -----*- C++ -*-===//
//
// An analysis of the bufferized module (before the target lowers it): the
// weights, the KV cache, and per entry the activation buffers at the
// entry's largest workload, with their liveness-based peak and the arena
// the target will build. Printed as JSON by hasten-compile --memory-report.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_LIB_COMPILER_MEMORYREPORT_H
#define HASTEN_LIB_COMPILER_MEMORYREPORT_H

#include "KVCachePlan.h"
#include "hasten/Manifest/ModuleManifest.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/JSON.h"

namespace hasten {

/// `draftKV`, when not null, is the cache of a draft compiled into the
/// module (reported as "draft_kv_cache").
llvm::json::Object buildMemoryReport(mlir::ModuleOp bufferized, const KVCachePlan &kv,
                                     const KVCachePlan *draftKV, uint64_t weightBytes,
                                     const std::vector<WeightInfo> &weights,
                                     llvm::StringRef source);

} // namespace hasten

#endif // HASTEN_LIB_COMPILER_MEMORYREPORT_H
