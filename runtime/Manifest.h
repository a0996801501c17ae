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

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace hasten {

/// Version of the manifest schema and of the entry calling convention.
/// Version 2: entries carry a kind and a model namespace, tensors a role,
/// and the module its device and KV caches; the runtime reads roles, never
/// names, and refuses version 1 modules. Version 3: the module carries
/// hasten_module_hash, and generated code allocates through the runtime.
/// Version 4: the roles of the spec_step entry (draft cache and length,
/// accepted tokens), checked in range on load. Version 5: weights live in a
/// segment the runtime maps (in the module file or a sidecar) and whose
/// address it stores in hasten_weights_base; weights carry their format.
constexpr uint32_t kManifestFormatVersion = 5;

/// The exported pointer the runtime sets to the mapped weight segment
/// before any entry runs.
constexpr const char *kWeightsBaseSymbol = "hasten_weights_base";
/// The (non-allocated) ELF section of a module that embeds its segment.
constexpr const char *kWeightsSectionName = ".hasten.weights";
/// A sidecar weights file: a header page, then the segment.
constexpr char kSidecarMagic[8] = {'H', 'S', 'T', 'N', 'W', 'G', 'T', '1'};
constexpr uint64_t kSidecarHeaderBytes = 4096;
/// The segment's alignment in either file, so that it maps directly.
constexpr uint64_t kWeightSegmentAlignment = 4096;

/// The sidecar's header: the magic, then these fields (little-endian), then
/// zeros up to kSidecarHeaderBytes.
struct SidecarHeader {
  char magic[8];
  uint64_t segmentBytes;
  /// The ModuleHasher digest of the segment; equal to the manifest's
  /// weight_segment_hash for the module it belongs to.
  uint64_t segmentHash;
};

/// The module exports the manifest bytes and their size under these names.
constexpr const char *kManifestSymbol = "hasten_manifest";
constexpr const char *kManifestSizeSymbol = "hasten_manifest_size";

/// ... and, as an 8-byte value, the ModuleHasher digest of the whole module
/// file with these 8 bytes read as zeros. The compiler writes it after
/// linking; the runtime checks it before dlopen, so that a damaged file
/// (code, relocations, manifest or weights) is refused, not run. It detects
/// corruption; it is no signature (anyone can recompute it).
constexpr const char *kModuleHashSymbol = "hasten_module_hash";

/// A fast, chunking-independent 64-bit digest: four FNV-style lanes over
/// 32-byte blocks, the tail byte by byte. Every step is a bijection of a
/// lane, so any change of one byte changes the digest.
class ModuleHasher {
public:
  void update(const uint8_t *data, size_t size) {
    total += size;
    while (size) {
      if (pendingSize == 0 && size >= kBlock) {
        size_t whole = size / kBlock * kBlock;
        for (size_t at = 0; at < whole; at += kBlock)
          mixBlock(data + at);
        data += whole;
        size -= whole;
        continue;
      }
      size_t take = kBlock - pendingSize < size ? kBlock - pendingSize : size;
      for (size_t i = 0; i < take; ++i)
        pending[pendingSize + i] = data[i];
      pendingSize += take;
      data += take;
      size -= take;
      if (pendingSize == kBlock) {
        mixBlock(pending);
        pendingSize = 0;
      }
    }
  }
  uint64_t finish() const {
    uint64_t h = total;
    for (int lane = 0; lane < 4; ++lane)
      h = (h ^ lanes[lane]) * kPrime;
    for (size_t i = 0; i < pendingSize; ++i)
      h = (h ^ pending[i]) * kPrime;
    return h;
  }

private:
  static constexpr size_t kBlock = 32;
  static constexpr uint64_t kPrime = 0x100000001b3ull;
  void mixBlock(const uint8_t *block) {
    for (int lane = 0; lane < 4; ++lane) {
      uint64_t word; // little-endian: modules are x86-64 only
      std::memcpy(&word, block + 8 * lane, 8);
      lanes[lane] = (lanes[lane] ^ word) * kPrime;
    }
  }
  uint64_t lanes[4] = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull, 0x9ce484222325cbf2ull,
                       0x2325cbf29ce48422ull};
  uint8_t pending[kBlock] = {};
  size_t pendingSize = 0;
  uint64_t total = 0;
};

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
