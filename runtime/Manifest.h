//===- Manifest.h - the module manifest shared by compiler and runtime ----===//
//
// What the compiler writes into a module and the runtime reads back: the
// FlatBuffers manifest (schema in manifest.fbs), its format version, and the
// exported symbols that hold it. No MLIR or LLVM here: the runtime uses it.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_RUNTIME_MANIFEST_H
#define HASTEN_RUNTIME_MANIFEST_H

#include "manifest_generated.h"

#include <cstdint>

namespace hasten {

/// Version of the manifest schema and of the entry calling convention.
/// Version 2: entries carry a kind and a model namespace, tensors a role,
/// and the module its device and KV caches; the runtime reads roles, never
/// names, and refuses version 1 modules.
constexpr uint32_t kManifestFormatVersion = 2;

/// The module exports the manifest bytes and their size under these names.
constexpr const char *kManifestSymbol = "hasten_manifest";
constexpr const char *kManifestSizeSymbol = "hasten_manifest_size";

/// Prefix of the exported entry wrappers: `hasten_entry_<name>`.
constexpr const char *kEntrySymbolPrefix = "hasten_entry_";

/// LLVM target features that generated code may depend on, with their
/// /proc/cpuinfo names; the manifest records the cpuinfo spelling.
struct CpuFeatureName {
  const char *llvm;
  const char *cpuinfo;
};
constexpr CpuFeatureName kTrackedCpuFeatures[] = {
    {"sse3", "pni"},
    {"ssse3", "ssse3"},
    {"sse4.1", "sse4_1"},
    {"sse4.2", "sse4_2"},
    {"sse4a", "sse4a"},
    {"popcnt", "popcnt"},
    {"lzcnt", "abm"},
    {"bmi", "bmi1"},
    {"bmi2", "bmi2"},
    {"movbe", "movbe"},
    {"avx", "avx"},
    {"avx2", "avx2"},
    {"fma", "fma"},
    {"f16c", "f16c"},
    {"avx512f", "avx512f"},
    {"avx512bw", "avx512bw"},
    {"avx512cd", "avx512cd"},
    {"avx512dq", "avx512dq"},
    {"avx512vl", "avx512vl"},
    {"avx512vnni", "avx512_vnni"},
    {"avx512bf16", "avx512_bf16"},
    {"avx512fp16", "avx512_fp16"},
    {"avx512vbmi", "avx512vbmi"},
    {"avx512vbmi2", "avx512_vbmi2"},
    {"avx512ifma", "avx512ifma"},
    {"avx512bitalg", "avx512_bitalg"},
    {"avx512vpopcntdq", "avx512_vpopcntdq"},
    {"gfni", "gfni"},
    {"vaes", "vaes"},
    {"vpclmulqdq", "vpclmulqdq"},
    {"amx-tile", "amx_tile"},
    {"amx-bf16", "amx_bf16"},
    {"amx-int8", "amx_int8"},
    {"amx-fp16", "amx_fp16"},
};

} // namespace hasten

#endif // HASTEN_RUNTIME_MANIFEST_H
