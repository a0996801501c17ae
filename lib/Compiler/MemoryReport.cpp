//===- MemoryReport.cpp - the memory plan of a compiled model --------------===//

#include "MemoryReport.h"

#include "MemoryPlan.h"
#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/Passes/BufferPacking.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <cmath>
#include <map>

using namespace mlir;
using namespace hasten;

namespace {

/// The KV cache of one model: its shape, bytes, budget and paging.
llvm::json::Object kvCacheReport(const KVCachePlan &kv) {
  int64_t block = kv.blockSize;
  llvm::json::Object cache{{"layout", block ? "paged" : "contiguous"},
                           {"layers", kv.layers},
                           {"kv_heads", kv.kvHeads},
                           {"head_dim", kv.headDim},
                           {"element_bytes", kv.elementBytes},
                           {"bytes_per_token", kv.bytesPerToken},
                           {"capacity_tokens", kv.capacity},
                           {"bytes_per_sequence", kv.capacity * kv.bytesPerToken}};
  if (kv.positionRows)
    cache["position_table"] = llvm::json::Object{{"name", kv.positionTable},
                                                 {"rows", kv.positionRows}};
  if (kv.budgetBytes) {
    cache["budget_bytes"] = int64_t(kv.budgetBytes);
    cache["max_tokens_under_budget"] = kv.budgetTokens;
  }
  if (block) {
    // A sequence of n tokens holds ceil(n / block) blocks; the unused
    // slots of its last block (0 to block - 1, half that on average) are
    // the internal fragmentation.
    cache["block_size"] = block;
    cache["blocks_per_sequence"] = kv.capacity / block;
    cache["block_bytes"] = block * kv.bytesPerToken;
    // --kv-device-tokens: a CUDA pool's newest blocks on the GPU, the rest
    // in pinned host memory (the runtime rounds the device part up to the
    // driver's mapping granularity).
    if (kv.deviceTokens >= 0) {
      int64_t onDevice = std::min(kv.deviceTokens, kv.capacity);
      cache["placement"] = llvm::json::Object{
          {"device_tokens", onDevice},
          {"device_bytes_per_sequence", onDevice * kv.bytesPerToken},
          {"host_bytes_per_sequence", (kv.capacity - onDevice) * kv.bytesPerToken}};
    }
    cache["fragmentation"] = llvm::json::Object{
        {"worst_bytes_per_sequence", (block - 1) * kv.bytesPerToken},
        {"mean_bytes_per_sequence", (block - 1) * kv.bytesPerToken / 2},
        {"worst_fraction_at_capacity",
         std::round(double(block - 1) / kv.capacity * 1e4) / 1e4}};
  }
  return cache;
}

} // namespace

llvm::json::Object hasten::buildMemoryReport(ModuleOp module, const KVCachePlan &kv,
                                             const KVCachePlan *draftKV, uint64_t weightBytes,
                                             const std::vector<WeightInfo> &weights,
                                             StringRef source) {
  llvm::json::Object report{{"model", source.str()}, {"weight_bytes", int64_t(weightBytes)}};
  // By the format the kernels read (--weights); constants that are no
  // named initializer (folded shapes, masks) as "other".
  std::map<std::string, int64_t> formats;
  int64_t listed = 0;
  for (const WeightInfo &w : weights) {
    formats[w.format] += int64_t(w.bytes);
    listed += int64_t(w.bytes);
  }
  if (int64_t(weightBytes) > listed)
    formats["other"] = int64_t(weightBytes) - listed;
  llvm::json::Object byFormat;
  for (const auto &[format, bytes] : formats)
    byFormat[format] = bytes;
  report["weight_bytes_by_format"] = std::move(byFormat);
  if (kv.decoder)
    report["kv_cache"] = kvCacheReport(kv);
  // A draft compiled into the module (--draft) has a cache of its own.
  if (draftKV && draftKV->decoder)
    report["draft_kv_cache"] = kvCacheReport(*draftKV);
  // Decoder entries at their largest workload (a full prefill or
  // verification, a decode at the last position), other functions with
  // every dynamic dimension at 1.
  llvm::json::Array activations;
  for (auto func : module.getOps<func::FuncOp>()) {
    if (func.isExternal())
      continue;
    auto kind = func->getAttrOfType<StringAttr>(HastenDialect::kEntryKindAttrName);
    std::optional<EntryKind> parsed = kind ? symbolizeEntryKind(kind.getValue()) : std::nullopt;
    PlanWorkload workload;
    if (parsed == EntryKind::Prefill || parsed == EntryKind::Verify)
      workload = {kv.capacity, 0, 1};
    else if (parsed == EntryKind::Decode)
      workload = {1, kv.capacity - 1, 1};
    ActivationPlan plan = planActivations(func, workload);
    // What the code allocates: one arena for the static-shape buffers, plus
    // its dynamic-shape buffers.
    StaticArena arena = planStaticArena(func);
    activations.push_back(llvm::json::Object{
        {"entry", func.getSymName().str()},
        {"tokens", workload.tokens},
        {"past_length", workload.pastLength},
        {"buffers", plan.buffers},
        {"total_bytes", plan.totalBytes},
        {"peak_live_bytes", plan.peakLiveBytes},
        {"planned_arena_bytes", plan.arenaBytes},
        {"static_arena_bytes", arena.bytes},
        {"static_arena_buffers", int64_t(arena.allocs.size())},
        {"unknown_sizes", plan.unknownSizes}});
  }
  report["activations"] = std::move(activations);
  return report;
}
